package cli

import (
	"fmt"
	"strings"
)

// hideTokenArg keeps a --token given on the command line out of the
// process title, which ps and /proc/<pid>/cmdline show to every user of
// the machine. The parsed value shares memory with the argument, so it is
// copied first; then the argument is overwritten with '*' where the
// platform allows it (overwriteArg), or a warning says what to use
// instead. The token is visible from the exec until this runs, a few
// milliseconds: the flag's help says so.
func (a *app) hideTokenArg() {
	if a.token == "" || len(a.io.ProcessArgs) == 0 {
		return
	}
	a.token = strings.Clone(a.token)
	values := tokenArgs(a.io.ProcessArgs)
	if len(values) == 0 {
		return
	}
	for _, v := range values {
		if !overwriteArg(v) {
			fmt.Fprintln(a.io.Err, "mailbus: warning: --token is visible to other users of this machine (ps); use --token-file or MAILBUS_TOKEN")
			return
		}
	}
}

// tokenArgs returns the values of --token in the process's arguments
// (args[0] is the program): the argument after "--token", or the part of
// "--token=VALUE" after the "=". These strings share the memory of the
// arguments.
func tokenArgs(args []string) []string {
	var values []string
	for i := 1; i < len(args); i++ {
		switch arg := args[i]; {
		case arg == "--":
			return values
		case arg == "--token" && i+1 < len(args):
			values = append(values, args[i+1])
			i++
		case strings.HasPrefix(arg, "--token="):
			values = append(values, arg[len("--token="):])
		}
	}
	return values
}
