package cli

import (
	"slices"
	"strings"
	"testing"
)

// TestTokens: the admin (serve's admin.token, found through MAILBUS_DATA)
// makes device tokens; a device token sees only its account, a read-only
// one cannot change it, a revoked one stops working, and each refusal says
// what to do.
func TestTokens(t *testing.T) {
	c, _, _ := startServe(t, "--log-level", "warn")
	c.env = append(c.env, "PW=secret")
	for _, name := range []string{"work", "other"} {
		c.ok("account", "add", "--name", name, "--protocol", "pop3", "--host", "127.0.0.1", "--port", "1",
			"--security", "none", "--username", "u", "--password-env", "PW")
	}
	as := func(token string) *cli {
		return &cli{t: t, bin: c.bin, server: c.server, env: append(slices.Clone(c.env), "MAILBUS_TOKEN="+token)}
	}
	create := func(args ...string) string {
		r := c.ok(append([]string{"token", "create"}, args...)...)
		secret := strings.TrimSpace(r.stdout)
		if !strings.HasPrefix(secret, "mbt_") || strings.Contains(secret, "\n") || !strings.Contains(r.stderr, "shown only now") {
			t.Fatalf("token create printed: %s", r)
		}
		return secret
	}
	phone := create("--name", "phone", "--account", "work")
	archiver := create("--name", "archiver", "--account", "work", "--read-only")

	list := c.ok("token", "list")
	for _, want := range []string{"phone", "archiver", "read-only", "admin"} {
		if !strings.Contains(list.stdout, want) {
			t.Errorf("token list lacks %q:\n%s", want, list.stdout)
		}
	}
	if strings.Contains(list.stdout, phone) || strings.Contains(list.stdout, archiver) {
		t.Error("token list shows a secret")
	}

	dev := as(phone)
	if r := dev.ok("account", "list"); !strings.Contains(r.stdout, "work") || strings.Contains(r.stdout, "other") {
		t.Errorf("account list with work's token:\n%s", r.stdout)
	}
	if r := dev.run("mailbox", "list", "--account", "other"); r.code != 1 || !strings.Contains(r.stderr, `no account "other"`) {
		t.Errorf("another account with a device token: want exit 1, no account: %s", r)
	}
	dev.ok("mailbox", "create", "--account", "work", "FromPhone")
	if r := dev.run("account", "remove", "work"); r.code != 1 || !strings.Contains(r.stderr, "may not do this") {
		t.Errorf("a device token removed an account: %s", r)
	}

	ro := as(archiver)
	ro.ok("mailbox", "list", "--account", "work")
	if r := ro.run("mailbox", "create", "--account", "work", "FromArchiver"); r.code != 1 || !strings.Contains(r.stderr, "may not do this") || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("a read-only token changing: want exit 1 saying why: %s", r)
	}
	if r := dev.run("token", "list"); r.code != 1 || !strings.Contains(r.stderr, "may not do this") {
		t.Errorf("token list with a device token: %s", r)
	}

	var phoneID string
	for _, l := range strings.Split(list.stdout, "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[1] == "phone" {
			phoneID = f[0]
		}
	}
	if r := c.ok("token", "revoke", phoneID); !strings.Contains(r.stdout, "Revoked") {
		t.Errorf("token revoke: %s", r)
	}
	if r := dev.run("account", "list"); r.code != 1 || !strings.Contains(r.stderr, "refused the API token") || !strings.Contains(r.stderr, "--token") {
		t.Errorf("a revoked token: want exit 1 saying what to do: %s", r)
	}
	if r := c.run("token", "revoke", "0000000000000000"); r.code != 1 || !strings.Contains(r.stderr, "no token") {
		t.Errorf("revoke of a missing token: %s", r)
	}

	// No token at all: the message says where tokens come from.
	none := &cli{t: t, bin: c.bin, server: c.server, env: []string{"MAILBUS_DATA=" + t.TempDir()}}
	if r := none.run("account", "list"); r.code != 1 || !strings.Contains(r.stderr, "refused the API token") || !strings.Contains(r.stderr, "admin.token") {
		t.Errorf("no token: want exit 1 saying what to do: %s", r)
	}
	if r := c.run("token", "create", "--name", "x"); r.code != 2 || !strings.Contains(r.stderr, "--account") {
		t.Errorf("a device token without --account: want a usage error: %s", r)
	}
}
