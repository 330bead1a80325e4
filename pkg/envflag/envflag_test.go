package envflag

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestEnvDefaultsAndRedaction(t *testing.T) {
	t.Setenv("MAILBUS_TEST_URL", "postgres://mailbus:TopSecretPw@db/mailbus")
	t.Setenv("MAILBUS_TEST_LISTEN", "0.0.0.0:1")
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	u := String(fs, "database-url", "MAILBUS_TEST_URL", "", "database")
	l := String(fs, "listen", "MAILBUS_TEST_LISTEN", "127.0.0.1:7400", "listen")
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if *u != "postgres://mailbus:TopSecretPw@db/mailbus" || *l != "0.0.0.0:1" {
		t.Fatalf("env defaults not applied: %q %q", *u, *l)
	}
	fs.PrintDefaults()
	if strings.Contains(out.String(), "TopSecretPw") {
		t.Fatalf("password in usage:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "0.0.0.0:1") {
		t.Fatalf("plain default missing from usage:\n%s", out.String())
	}
}

func TestRedact(t *testing.T) {
	tests := map[string]string{
		"nats://user:pw@host:4222": "nats://user:xxxxx@host:4222",
		"nats://host:4222":         "nats://host:4222",
		"127.0.0.1:7400":           "127.0.0.1:7400",
		"":                         "",
	}
	for in, want := range tests {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestStringSlice: a repeatable flag takes repeats and commas, and the
// environment's comma-separated list when not given.
func TestStringSlice(t *testing.T) {
	tests := []struct {
		name string
		env  string
		args []string
		want []string
	}{
		{"none", "", nil, nil},
		{"repeated", "", []string{"--origin", "https://a.example", "--origin=https://b.example"}, []string{"https://a.example", "https://b.example"}},
		{"commas", "", []string{"--origin", "https://a.example,https://b.example"}, []string{"https://a.example", "https://b.example"}},
		{"environment", " https://a.example , ,https://b.example", nil, []string{"https://a.example", "https://b.example"}},
		{"flag beats environment", "https://a.example", []string{"--origin", "*"}, []string{"*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.env != "" {
				t.Setenv("TEST_ORIGINS", tt.env)
			}
			fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
			got := StringSlice(fs, "origin", "TEST_ORIGINS", "origins")
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if strings.Join(*got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("%q, want %q", *got, tt.want)
			}
		})
	}
}
