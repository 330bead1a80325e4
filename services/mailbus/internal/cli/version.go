package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the mailbus version",
		Example: "  mailbus version\n  mailbus version --json",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			v := struct {
				Version  string `json:"version"`
				Go       string `json:"go"`
				Revision string `json:"revision,omitempty"`
				Platform string `json:"platform"`
			}{Version: Version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
			if bi, ok := debug.ReadBuildInfo(); ok {
				for _, s := range bi.Settings {
					if s.Key == "vcs.revision" {
						v.Revision = s.Value
					}
				}
				if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
					v.Version = bi.Main.Version
				}
			}
			if a.json {
				return json.NewEncoder(a.io.Out).Encode(v)
			}
			fmt.Fprintf(a.io.Out, "mailbus %s (%s, %s", v.Version, v.Go, v.Platform)
			if v.Revision != "" {
				fmt.Fprintf(a.io.Out, ", revision %.12s", v.Revision)
			}
			fmt.Fprintln(a.io.Out, ")")
			return nil
		}),
	}
}
