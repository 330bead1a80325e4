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
