// Package envflag defines command-line flags whose defaults come from
// environment variables, so that every mailbus binary takes the same
// setting the same two ways (flag first, then MAILBUS_* variable, then the
// built-in default), and documents both in --help.
package envflag

import (
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
