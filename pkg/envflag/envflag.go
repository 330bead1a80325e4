// Package envflag defines command-line flags whose defaults come from
// environment variables, so that every mailbus binary takes the same
// setting the same two ways (flag first, then MAILBUS_* variable, then the
// built-in default), and documents both in --help.
//
// Flags are GNU style (github.com/spf13/pflag, as the mailbus command line):
// --name value or --name=value. The single-dash spelling of the Go flag
// package (-name value) is still accepted for one release, with a
// deprecation warning on stderr: see NormalizeArgs.
package envflag

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// String defines a string flag defaulting to $env, else def. A default
// that is a URL with a password is shown in --help with the password
// replaced, so that credentials in the environment never reach a terminal
// or a log through a usage message.
func String(fs *pflag.FlagSet, name, env, def, usage string) *string {
	if v, ok := os.LookupEnv(env); ok {
		def = v
	}
	p := fs.String(name, def, usage+" (env "+env+")")
	fs.Lookup(name).DefValue = Redact(def)
	return p
}

// Redact returns s with the password of a URL replaced by "xxxxx"; other
// strings are returned as they are.
func Redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}

// badEnvKey annotates a flag whose environment variable holds a value
// that does not parse: Command.Parse refuses it unless the flag is given.
const badEnvKey = "envflag-bad-env"

// lookupParsed parses $env with parse; a value that does not parse is
// noted on the flag (once it is defined, by the returned func), and an
// empty one counts as unset.
func lookupParsed[T any](env string, parse func(string) (T, error)) (val T, ok bool, note func(fs *pflag.FlagSet, name string)) {
	note = func(*pflag.FlagSet, string) {}
	v, set := os.LookupEnv(env)
	if !set || v == "" {
		return val, false, note
	}
	val, err := parse(v)
	if err != nil {
		msg := fmt.Sprintf("%s=%q: %v", env, v, err)
		return val, false, func(fs *pflag.FlagSet, name string) {
			_ = fs.SetAnnotation(name, badEnvKey, []string{msg})
		}
	}
	return val, true, note
}

// Bool defines a bool flag defaulting to $env ("1", "true"...), else def.
func Bool(fs *pflag.FlagSet, name, env string, def bool, usage string) *bool {
	v, ok, note := lookupParsed(env, strconv.ParseBool)
	if ok {
		def = v
	}
	p := fs.Bool(name, def, usage+" (env "+env+")")
	note(fs, name)
	return p
}

// Duration defines a duration flag defaulting to $env, else def.
func Duration(fs *pflag.FlagSet, name, env string, def time.Duration, usage string) *time.Duration {
	v, ok, note := lookupParsed(env, time.ParseDuration)
	if ok {
		def = v
	}
	p := fs.Duration(name, def, usage+" (env "+env+")")
	note(fs, name)
	return p
}

// StringSlice defines a repeatable flag (--name a --name b, or --name a,b)
// defaulting to $env split at commas, else none.
func StringSlice(fs *pflag.FlagSet, name, env, usage string) *[]string {
	var def []string
	if v, ok := os.LookupEnv(env); ok {
		def = SplitList(v)
	}
	return fs.StringSlice(name, def, usage+" (env "+env+", comma-separated)")
}

// SplitList splits a comma-separated list, dropping empty items and the
// spaces around each.
func SplitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// Int64 defines an int64 flag defaulting to $env, else def.
func Int64(fs *pflag.FlagSet, name, env string, def int64, usage string) *int64 {
	v, ok, note := lookupParsed(env, func(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) })
	if ok {
		def = v
	}
	p := fs.Int64(name, def, usage+" (env "+env+")")
	note(fs, name)
	return p
}

// Logger returns a structured logger writing to stderr at the given level
// ("debug", "info", "warn", "error") in "text" or "json" format.
func Logger(level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// Command holds what every mailbus binary parses the same way: the
// --log-level and --log-format flags, no positional arguments (ParseArgs
// for a command that takes some), and the exit code 2 for a usage error.
type Command struct {
	name             string
	fs               *pflag.FlagSet
	logLevel, logFmt *string
}

// NewCommand defines --log-level and --log-format on fs for the binary
// name.
func NewCommand(name string, fs *pflag.FlagSet) *Command {
	return &Command{
		name:     name,
		fs:       fs,
		logLevel: String(fs, "log-level", "MAILBUS_LOG_LEVEL", "info", "debug, info, warn or error"),
		logFmt:   String(fs, "log-format", "MAILBUS_LOG_FORMAT", "text", "text or json"),
	}
}

// Parse parses args and builds the logger. When it returns ok false the
// binary exits with code: 0 after --help, 2 after a usage error (reported
// on the flag set's output, stderr unless set). Single-dash long flags are accepted with a warning
// (NormalizeArgs).
func (c *Command) Parse(args []string) (log *slog.Logger, code int, ok bool) {
	_, log, code, ok = c.parse(args, false)
	return log, code, ok
}

// ParseArgs is Parse for a command that takes positional arguments (such
// as the action of "mailbus-store migrate"): they may come before, between
// or after the flags, and are returned for the command to check.
func (c *Command) ParseArgs(args []string) (positional []string, log *slog.Logger, code int, ok bool) {
	return c.parse(args, true)
}

func (c *Command) parse(args []string, positional bool) ([]string, *slog.Logger, int, bool) {
	args = NormalizeArgs(c.name, c.fs, args, c.fs.Output())
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil, nil, 0, false
		}
		fmt.Fprintf(c.fs.Output(), "%s: %v\nRun '%s --help' for the flags.\n", c.name, err, c.name)
		return nil, nil, 2, false
	}
	// An environment variable that does not parse is refused, not left
	// for the built-in default, unless the flag itself is given.
	var badEnv string
	c.fs.VisitAll(func(f *pflag.Flag) {
		if msg := f.Annotations[badEnvKey]; len(msg) > 0 && !f.Changed && badEnv == "" {
			badEnv = msg[0]
		}
	})
	if badEnv != "" {
		fmt.Fprintf(c.fs.Output(), "%s: %s\nRun '%s --help' for the flags.\n", c.name, badEnv, c.name)
		return nil, nil, 2, false
	}
	if !positional && c.fs.NArg() > 0 {
		fmt.Fprintf(c.fs.Output(), "%s: unexpected argument %q\nRun '%s --help' for the flags.\n", c.name, c.fs.Arg(0), c.name)
		return nil, nil, 2, false
	}
	log, err := Logger(*c.logLevel, *c.logFmt)
	if err != nil {
		fmt.Fprintf(c.fs.Output(), "%s: %v\n", c.name, err)
		return nil, nil, 2, false
	}
	return c.fs.Args(), log, 0, true
}

// NormalizeArgs rewrites the single-dash spelling of a long flag of fs
// (-name, -name=value, as the Go flag package took them) to --name, and
// warns on stderr once per flag that the spelling is deprecated: pflag
// would read -name as the shorthands -n -a -m -e. Values of flags, the
// arguments after "--", and words that name no flag of fs (and -help) are
// left as they are; -help becomes --help.
func NormalizeArgs(command string, fs *pflag.FlagSet, args []string, stderr io.Writer) []string {
	out := make([]string, 0, len(args))
	warned := map[string]bool{}
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(out, args[i:]...)
		}
		if len(arg) < 2 || arg[0] != '-' {
			out = append(out, arg)
			continue
		}
		long := strings.HasPrefix(arg, "--")
		name, _, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		f := fs.Lookup(name)
		if !long && (f != nil || name == "help") && len(name) > 1 {
			arg = "-" + arg
			if !warned[name] {
				warned[name] = true
				fmt.Fprintf(stderr, "%s: warning: -%s is deprecated, use --%s (single-dash flags stop working in a later release)\n", command, name, name)
			}
			long = true
		}
		out = append(out, arg)
		// A long flag that takes a value and has none after "=" takes
		// the next argument, whatever it looks like.
		if long && f != nil && !hasValue && f.NoOptDefVal == "" && i+1 < len(args) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}
