// Package envflag defines command-line flags whose defaults come from
// environment variables, so that every mailbus binary takes the same
// setting the same two ways (flag first, then MAILBUS_* variable, then the
// built-in default), and documents both in --help.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// String defines a string flag defaulting to $env, else def. A default
// that is a URL with a password is shown in --help with the password
// replaced, so that credentials in the environment never reach a terminal
// or a log through a usage message.
func String(fs *flag.FlagSet, name, env, def, usage string) *string {
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

// Bool defines a bool flag defaulting to $env ("1", "true"...), else def.
func Bool(fs *flag.FlagSet, name, env string, def bool, usage string) *bool {
	if v, ok := os.LookupEnv(env); ok {
		if b, err := strconv.ParseBool(v); err == nil {
			def = b
		}
	}
	return fs.Bool(name, def, usage+" (env "+env+")")
}

// Duration defines a duration flag defaulting to $env, else def.
func Duration(fs *flag.FlagSet, name, env string, def time.Duration, usage string) *time.Duration {
	if v, ok := os.LookupEnv(env); ok {
		if d, err := time.ParseDuration(v); err == nil {
			def = d
		}
	}
	return fs.Duration(name, def, usage+" (env "+env+")")
}

// Int64 defines an int64 flag defaulting to $env, else def.
func Int64(fs *flag.FlagSet, name, env string, def int64, usage string) *int64 {
	if v, ok := os.LookupEnv(env); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			def = n
		}
	}
	return fs.Int64(name, def, usage+" (env "+env+")")
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
// --log-level and --log-format flags, no positional arguments, and the exit
// code 2 for a usage error.
type Command struct {
	name             string
	fs               *flag.FlagSet
	logLevel, logFmt *string
}

// NewCommand defines --log-level and --log-format on fs for the binary
// name.
func NewCommand(name string, fs *flag.FlagSet) *Command {
	return &Command{
		name:     name,
		fs:       fs,
		logLevel: String(fs, "log-level", "MAILBUS_LOG_LEVEL", "info", "debug, info, warn or error"),
		logFmt:   String(fs, "log-format", "MAILBUS_LOG_FORMAT", "text", "text or json"),
	}
}

// Parse parses args and builds the logger. When it returns ok false the
// binary exits with code: 0 after --help, 2 after a usage error (already
// reported on the flag set's output or stderr).
func (c *Command) Parse(args []string) (log *slog.Logger, code int, ok bool) {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, 2, false
	}
	if c.fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q\n", c.name, c.fs.Arg(0))
		c.fs.Usage()
		return nil, 2, false
	}
	log, err := Logger(*c.logLevel, *c.logFmt)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", c.name, err)
		return nil, 2, false
	}
	return log, 0, true
}
