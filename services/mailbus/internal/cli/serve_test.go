package cli

import (
	"slices"
	"testing"

	"github.com/spf13/cobra"
)

// serve (and demo) take --exact-list-sizes (or its environment variable)
// as a comma-separated list of POP3 hosts.
func TestServeExactListSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"default", nil, nil, nil},
		{"flag", []string{"--exact-list-sizes", "pop.example.org, mail.example.net"}, nil, []string{"pop.example.org", "mail.example.net"}},
		{"every server", []string{"--exact-list-sizes=*"}, nil, []string{"*"}},
		{"environment", nil, map[string]string{"MAILBUS_POP3_EXACT_LIST_SIZES": "pop.example.org"}, []string{"pop.example.org"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := &app{io: IO{Getenv: func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }}}
			var f serveFlags
			cmd := &cobra.Command{Use: "serve"}
			a.addServeFlags(cmd, &f, "info")
			if err := cmd.ParseFlags(c.args); err != nil {
				t.Fatal(err)
			}
			cfg, err := a.serverConfig(&f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.ExactListSizes, c.want) {
				t.Errorf("ExactListSizes %q, want %q", cfg.ExactListSizes, c.want)
			}
		})
	}
}
