package envflag

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func TestCommandParse(t *testing.T) {
	tests := []struct {
		args     []string
		wantOK   bool
		wantCode int
	}{
		{args: nil, wantOK: true},
		{args: []string{"--log-level", "debug", "--log-format", "json"}, wantOK: true},
		{args: []string{"--help"}, wantCode: 0},
		{args: []string{"--no-such-flag"}, wantCode: 2},
		{args: []string{"stray"}, wantCode: 2},
		{args: []string{"--log-level", "loud"}, wantCode: 2},
		{args: []string{"--log-format", "xml"}, wantCode: 2},
	}
	for _, tt := range tests {
		fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		log, code, ok := NewCommand("x", fs).Parse(tt.args)
		if ok != tt.wantOK || code != tt.wantCode || (ok && log == nil) {
			t.Errorf("Parse(%q) = (%v, %d, %v), want ok %v code %d", tt.args, log, code, ok, tt.wantOK, tt.wantCode)
		}
	}
}

// TestCommandFlagSpellings checks that a flag is read the same from
// --name, --name=value, the deprecated -name and -name=value (with a
// warning naming the new spelling), and the environment, and that the
// flag beats the environment.
func TestCommandFlagSpellings(t *testing.T) {
	tests := []struct {
		name        string
		args        []string
		env         string
		wantListen  string
		wantVerbose bool
		wantWarn    []string
	}{
		{name: "double dash", args: []string{"--listen", "a:1", "--verbose"}, wantListen: "a:1", wantVerbose: true},
		{name: "double dash with =", args: []string{"--listen=a:1", "--verbose=true"}, wantListen: "a:1", wantVerbose: true},
		{name: "single dash", args: []string{"-listen", "a:1", "-verbose"}, wantListen: "a:1", wantVerbose: true,
			wantWarn: []string{"-listen is deprecated, use --listen", "-verbose is deprecated, use --verbose"}},
		{name: "single dash with =", args: []string{"-listen=a:1", "-verbose=false"}, wantListen: "a:1",
			wantWarn: []string{"-listen is deprecated, use --listen"}},
		{name: "value that looks like a flag", args: []string{"--listen", "-verbose"}, wantListen: "-verbose"},
		{name: "deprecated flag with such a value", args: []string{"-listen", "-verbose"}, wantListen: "-verbose",
			wantWarn: []string{"-listen is deprecated"}},
		{name: "environment", env: "e:2", wantListen: "e:2"},
		{name: "flag beats environment", args: []string{"-listen", "a:1"}, env: "e:2", wantListen: "a:1",
			wantWarn: []string{"-listen is deprecated"}},
		{name: "default", wantListen: "127.0.0.1:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("MAILBUS_TEST_LISTEN", tt.env)
			}
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			var out bytes.Buffer
			fs.SetOutput(&out)
			listen := String(fs, "listen", "MAILBUS_TEST_LISTEN", "127.0.0.1:1", "listen address")
			verbose := Bool(fs, "verbose", "MAILBUS_TEST_VERBOSE", false, "say more")
			if _, code, ok := NewCommand("x", fs).Parse(tt.args); !ok {
				t.Fatalf("Parse(%q): exit %d\n%s", tt.args, code, out.String())
			}
			if *listen != tt.wantListen || *verbose != tt.wantVerbose {
				t.Errorf("Parse(%q): listen %q verbose %v, want %q %v", tt.args, *listen, *verbose, tt.wantListen, tt.wantVerbose)
			}
			for _, w := range tt.wantWarn {
				if !strings.Contains(out.String(), "x: warning: "+w) {
					t.Errorf("Parse(%q): no warning %q in\n%s", tt.args, w, out.String())
				}
			}
			if len(tt.wantWarn) == 0 && out.Len() > 0 {
				t.Errorf("Parse(%q): unexpected output\n%s", tt.args, out.String())
			}
		})
	}
}

func TestNormalizeArgs(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("listen", "", "")
	fs.Bool("dev", false, "")
	tests := []struct {
		args, want []string
	}{
		{args: []string{"-listen", "a", "-dev"}, want: []string{"--listen", "a", "--dev"}},
		{args: []string{"-listen=-dev"}, want: []string{"--listen=-dev"}},
		{args: []string{"-help"}, want: []string{"--help"}},
		// Unknown names and shorthands stay as they are, for pflag
		// to refuse; so does everything after "--".
		{args: []string{"-nosuch", "-h", "-", "--", "-dev"}, want: []string{"-nosuch", "-h", "-", "--", "-dev"}},
		{args: []string{"--listen", "-dev", "-dev"}, want: []string{"--listen", "-dev", "--dev"}},
	}
	for _, tt := range tests {
		got := NormalizeArgs("x", fs, tt.args, io.Discard)
		if strings.Join(got, " ") != strings.Join(tt.want, " ") {
			t.Errorf("NormalizeArgs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}

func TestCommandWarnsOncePerFlag(t *testing.T) {
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	fs.StringSlice("tag", nil, "")
	if _, _, ok := NewCommand("x", fs).Parse([]string{"-tag", "a", "-tag", "b"}); !ok {
		t.Fatalf("Parse failed:\n%s", out.String())
	}
	if n := strings.Count(out.String(), "deprecated"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, out.String())
	}
}

// TestCommandBadEnvironment: an environment variable whose value does not
// parse is a usage error naming it, unless the flag is given (the flag
// beats the environment); before, the built-in default was used without
// a word (MAILBUS_POLL_INTERVAL=30 polled every minute). An empty value
// is no value.
func TestCommandBadEnvironment(t *testing.T) {
	tests := []struct {
		name, env, value string
		args             []string
		wantCode         int
		wantOK           bool
	}{
		{name: "duration without a unit", env: "MAILBUS_TEST_POLL", value: "30", wantCode: 2},
		{name: "bool", env: "MAILBUS_TEST_DEV", value: "yes", wantCode: 2},
		{name: "int64", env: "MAILBUS_TEST_MAX", value: "ten", wantCode: 2},
		{name: "flag given", env: "MAILBUS_TEST_POLL", value: "30", args: []string{"--poll", "5s"}, wantOK: true},
		{name: "empty", env: "MAILBUS_TEST_DEV", value: "", wantOK: true},
		{name: "good", env: "MAILBUS_TEST_MAX", value: "10", wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(tt.env, tt.value)
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			var out bytes.Buffer
			fs.SetOutput(&out)
			Duration(fs, "poll", "MAILBUS_TEST_POLL", time.Minute, "poll")
			Bool(fs, "dev", "MAILBUS_TEST_DEV", false, "dev")
			Int64(fs, "max", "MAILBUS_TEST_MAX", 1, "max")
			_, code, ok := NewCommand("x", fs).Parse(tt.args)
			if ok != tt.wantOK || code != tt.wantCode {
				t.Fatalf("Parse = (%d, %v), want code %d ok %v\n%s", code, ok, tt.wantCode, tt.wantOK, out.String())
			}
			if !ok && !strings.Contains(out.String(), tt.env+"=") {
				t.Errorf("the error does not name %s:\n%s", tt.env, out.String())
			}
		})
	}
}
