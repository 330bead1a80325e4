// Package cli is the mailbus command line: the client commands that talk
// gRPC to a store (accounts, status, mailboxes, messages, flags, changes,
// watch), and the serve and demo commands that run the services in one
// process.
//
// Exit codes: 0 success, 1 an error while doing the work (the store is
// unreachable, a request was refused), 2 a usage error (a missing or wrong
// argument or flag). Every error names what happened and what to do.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
)

// Exit codes.
const (
	ExitOK    = 0
	ExitError = 1
	ExitUsage = 2
)

// DefaultServer is the store address the client commands use.
const DefaultServer = "127.0.0.1:7400"

// Version is the mailbus version, set at build time with
// -ldflags "-X github.com/mailbus/mailbus/services/mailbus/internal/cli.Version=v1.2.3".
var Version = "dev"

// IO is where a command reads and writes.
type IO struct {
	In       io.Reader
	Out, Err io.Writer
	// Getenv looks up environment variables; nil means os.LookupEnv.
	Getenv func(string) (string, bool)
	// Program is how to run this binary again from the current
	// directory, for the commands the demo prints (ProgramName); empty
	// means "mailbus".
	Program string
	// ProcessArgs, when set, are the process's own arguments (os.Args):
	// the value of a --token there is overwritten after parsing, so that
	// ps and /proc/<pid>/cmdline stop showing it to other users.
	ProcessArgs []string
	// watchRefresh, when set, is how often a watch of every account lists
	// the accounts (tests); 0 means watchRefresh.
	watchRefresh time.Duration
}

// ProgramName returns how to run this binary again from the current
// directory, given the name it was started as (os.Args[0]): the path it
// was started by (./bin/mailbus after make demo), or "mailbus" when it was
// found on PATH (or the path needs quoting in a shell).
func ProgramName(argv0 string) string {
	if !strings.ContainsRune(argv0, os.PathSeparator) || strings.ContainsAny(argv0, " \t\n'\"$`\\;&|<>()*?[]{}~#!") {
		return "mailbus"
	}
	return argv0
}

// usageError is a wrong or missing argument: exit code 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// runError marks an error from a command's work: exit code 1. Errors that
// cobra returns itself (unknown flags and commands) are usage errors.
type runError struct{ err error }

func (e *runError) Error() string { return e.err.Error() }
func (e *runError) Unwrap() error { return e.err }

// app holds the global flags and the streams of one invocation.
type app struct {
	io       IO
	server   string
	json     bool
	timeout  time.Duration
	device   string
	logLevel string
	// tls is the transport security of the connection to the store.
	tls grpctls.Client
	// webhooksServer is the webhook commands' --webhooks-server: the
	// webhooks service's address when not the store's.
	webhooksServer string
	// token and tokenFile are --token and --token-file; tokenSource says
	// where the token used came from, for error messages.
	token, tokenFile, tokenSource string
}

// Main runs the mailbus command with args (without the program name) and
// returns the exit code.
func Main(ctx context.Context, args []string, stdio IO) int {
	if stdio.Getenv == nil {
		stdio.Getenv = os.LookupEnv
	}
	if stdio.Program == "" {
		stdio.Program = "mailbus"
	}
	a := &app{io: stdio}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdio.In)
	root.SetOut(stdio.Out)
	root.SetErr(stdio.Err)
	cmd, err := root.ExecuteContextC(ctx)
	if err == nil {
		return ExitOK
	}
	var re *runError
	var ue *usageError
	switch {
	case errors.As(err, &ue) || !errors.As(err, &re):
		if cmd == nil {
			cmd = root
		}
		fmt.Fprintf(stdio.Err, "mailbus: %v\n", err)
		fmt.Fprintf(stdio.Err, "Usage: %s\n", cmd.UseLine())
		fmt.Fprintf(stdio.Err, "Run '%s --help' for details and examples.\n", cmd.CommandPath())
		return ExitUsage
	default:
		if !errors.Is(err, context.Canceled) || ctx.Err() == nil {
			fmt.Fprintf(stdio.Err, "mailbus: %s\n", strings.TrimPrefix(re.err.Error(), "mailbus: "))
		}
		if ctx.Err() != nil {
			// Interrupted: the user asked for it.
			return ExitOK
		}
		return ExitError
	}
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "mailbus",
		Short: "mailbus: mail from POP3 and IMAP accounts in one store, every change an event",
		Long: `mailbus keeps mail from many POP3 and IMAP accounts in one store and
announces every change as an event on NATS JetStream.

This one binary runs everything (serve, demo) and is the command-line
client of a running store (every other command).

Exit codes: 0 success, 1 error (store unreachable, request refused),
2 usage error (missing or wrong argument or flag).`,
		Example: `  mailbus demo                      # try it: demo mail servers, accounts, live events
  mailbus serve --data ./mailbus-data
  mailbus account add --name work --protocol imap --host imap.example.com \
      --port 993 --security tls --username alice --password-file ~/.work-pw
  mailbus status --watch
  mailbus message list --account work --mailbox INBOX
  mailbus watch --json`,
		SilenceErrors: true,
		SilenceUsage:  true,
		RunE: func(cmd *cobra.Command, args []string) error {
			return usagef("missing command: one of %s", strings.Join(names(cmd), ", "))
		},
		CompletionOptions: cobra.CompletionOptions{HiddenDefaultCmd: false},
	}
	// Runs after the flags are parsed, before any command (none has a
	// persistent hook of its own).
	root.PersistentPreRun = func(*cobra.Command, []string) { a.hideTokenArg() }
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &usageError{msg: err.Error()} })
	pf := root.PersistentFlags()
	a.stringVar(pf, &a.server, "server", "MAILBUS_SERVER", DefaultServer, "the store's gRPC address (host:port)")
	a.boolVar(pf, &a.json, "json", "MAILBUS_JSON", false, "print the API's messages as JSON (protojson), one object per line")
	a.durationVar(pf, &a.timeout, "timeout", "MAILBUS_TIMEOUT", 10*time.Second, "deadline of each request to the store")
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown"
	}
	a.stringVar(pf, &a.device, "device", "MAILBUS_DEVICE", "cli-"+host, "the device id changes are made as (events name it as their origin)")
	a.stringVar(pf, &a.tls.CAFile, "tls-ca", "MAILBUS_TLS_CA", "", `CA bundle (PEM) verifying the store's certificate, or "system"; turns TLS on`)
	a.stringVar(pf, &a.tls.CertFile, "tls-cert", "MAILBUS_TLS_CERT", "", "client certificate (PEM), for a store that requires one (mutual TLS)")
	a.stringVar(pf, &a.tls.KeyFile, "tls-key", "MAILBUS_TLS_KEY", "", "private key (PEM) of --tls-cert")
	a.stringVar(pf, &a.tls.ServerName, "tls-server-name", "MAILBUS_TLS_SERVER_NAME", "", "name the store's certificate must carry, when not the host of --server")
	// No env default shown for --token: --help must not print a secret.
	pf.StringVar(&a.token, "token", "", "the API token (env MAILBUS_TOKEN); default the admin token of a local 'mailbus serve', "+defaultTokenFile+" (or $MAILBUS_DATA/admin.token). Other users can see a --token in ps while the command starts: prefer --token-file or MAILBUS_TOKEN")
	a.stringVar(pf, &a.tokenFile, "token-file", "MAILBUS_TOKEN_FILE", "", "read the API token from this file")

	root.AddCommand(
		a.accountCommand(),
		a.statusCommand(),
		a.mailboxCommand(),
		a.messageCommand(),
		a.flagCommand(),
		a.changesCommand(),
		a.watchCommand(),
		a.natsUserCommand(),
		a.eventsCommand(),
		a.webhookCommand(),
		a.keyCommand(),
		a.tokenCommand(),
		a.versionCommand(),
		a.serveCommand(),
		a.demoCommand(),
	)
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		if c.Name() == "completion" {
			c.Example = `  source <(mailbus completion bash)
  mailbus completion zsh > "${fpath[1]}/_mailbus"
  mailbus completion fish > ~/.config/fish/completions/mailbus.fish`
			c.SilenceUsage = true
			c.Args = func(cmd *cobra.Command, args []string) error {
				if len(args) > 0 {
					return usagef("unknown shell %q: want bash, zsh, fish or powershell", args[0])
				}
				return usagef("name the shell: bash, zsh, fish or powershell")
			}
			c.RunE = c.Args
			for _, s := range c.Commands() {
				s.Args = noArgs
			}
		}
	}
	return root
}

// group makes a command that only holds subcommands: run without one, or
// with an unknown one, it is a usage error.
func group(use, short, example string, subs ...*cobra.Command) *cobra.Command {
	c := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return usagef("missing command: one of %s", strings.Join(names(cmd), ", "))
		},
	}
	c.AddCommand(subs...)
	return c
}

func names(cmd *cobra.Command) []string {
	var out []string
	for _, c := range cmd.Commands() {
		out = append(out, c.Name())
	}
	return out
}

// noArgs refuses positional arguments as a usage error.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef("unexpected argument %q", args[0])
	}
	return nil
}

func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("missing %s", what)
		}
		if len(args) > n {
			return usagef("unexpected argument %q", args[n])
		}
		return nil
	}
}

func minArgs(n int, what string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < n {
			return usagef("missing %s", what)
		}
		return nil
	}
}

// run wraps a command's work: its errors exit 1 unless they are usage
// errors.
func (a *app) run(f func(ctx context.Context, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		err := f(cmd.Context(), cmd, args)
		if err == nil {
			return nil
		}
		var ue *usageError
		if errors.As(err, &ue) {
			return ue
		}
		return &runError{err: a.explain(err)}
	}
}

// requireFlags is a usage error when a required flag is missing.
func requireFlags(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if !cmd.Flags().Changed(n) {
			return usagef("missing --%s", n)
		}
	}
	return nil
}

// Flags with defaults from MAILBUS_* variables, like pkg/envflag.

func (a *app) env(name string) (string, bool) { return a.io.Getenv(name) }

func (a *app) stringVar(fs *pflag.FlagSet, p *string, name, env, def, usage string) {
	if v, ok := a.env(env); ok {
		def = v
	}
	fs.StringVar(p, name, def, usage+" (env "+env+")")
	fs.Lookup(name).DefValue = envflag.Redact(def)
}

func (a *app) boolVar(fs *pflag.FlagSet, p *bool, name, env string, def bool, usage string) {
	if v, ok := a.env(env); ok {
		switch strings.ToLower(v) {
		case "1", "true", "yes", "on":
			def = true
		case "0", "false", "no", "off", "":
			def = false
		}
	}
	fs.BoolVar(p, name, def, usage+" (env "+env+")")
}

func (a *app) durationVar(fs *pflag.FlagSet, p *time.Duration, name, env string, def time.Duration, usage string) {
	if v, ok := a.env(env); ok {
		if d, err := time.ParseDuration(v); err == nil {
			def = d
		}
	}
	fs.DurationVar(p, name, def, usage+" (env "+env+")")
}

// stringSliceVar defines a repeatable flag defaulting to $env split at
// commas.
func (a *app) stringSliceVar(fs *pflag.FlagSet, p *[]string, name, env, usage string) {
	var def []string
	if v, ok := a.env(env); ok {
		def = envflag.SplitList(v)
	}
	fs.StringSliceVar(p, name, def, usage+" (env "+env+", comma-separated)")
}

func (a *app) int64Var(fs *pflag.FlagSet, p *int64, name, env string, def int64, usage string) {
	if v, ok := a.env(env); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			def = n
		}
	}
	fs.Int64Var(p, name, def, usage+" (env "+env+")")
}
