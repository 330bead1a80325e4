package cli

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/discovertest"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// serveDiscovering runs mailbus serve on data with DiscoverSettings'
// lookups sent to env until the test ends; it returns the store's
// address.
func serveDiscovering(t *testing.T, data string, env *discovertest.Env) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := (&app{io: IO{Getenv: func(string) (string, bool) { return "", false }}}).serverConfig(&serveFlags{
		data: data, metricsListen: "-", listen: "127.0.0.1:0", eventsReplicas: 1,
		logLevel: "error", logFormat: "text", retention: time.Hour, maxMessageSize: 1 << 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener, cfg.Discover = ln, env.Config()
	if cfg.ServiceToken, _, err = apitoken.Generate(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan mailbus.Info, 1)
	cfg.Ready = func(i mailbus.Info) { ready <- i }
	srv, err := mailbus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case info := <-ready:
		return info.StoreAddr
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return ""
}

// TestAccountAddEmailDryRunOffline: --email with a preset provider and
// --dry-run needs neither the network nor the store (the store's address
// is a closed port, so any call would fail), and prints the settings and
// where they came from.
func TestAccountAddEmailDryRunOffline(t *testing.T) {
	env := map[string]string{"MAILBUS_SERVER": "127.0.0.1:1", "MAILBUS_TOKEN": "mbt_x_y"}
	tests := []struct {
		args []string
		want []string
	}{
		{[]string{"--email", "alice@gmail.com"}, []string{
			"Found by built-in preset Gmail", "name:       alice@gmail.com", "protocol:   imap", "server:     imap.gmail.com:993, security tls",
			"username:   alice@gmail.com", "login:      OAuth 2.0 (OAuth 2.0 provider: google)", "note:       Google takes OAuth 2.0", "Dry run: no account was added.",
		}},
		{[]string{"--email", "bob@outlook.com", "--protocol", "pop3", "--name", "work"}, []string{
			"name:       work", "protocol:   pop3", "server:     outlook.office365.com:995, security tls", "OAuth 2.0 provider: microsoft",
		}},
		{[]string{"--email", "carol@web.de"}, []string{"server:     imap.web.de:993", "username:   carol\n", "login:      password\n"}},
		{[]string{"--email", "dave@yahoo.com", "--username", "dave2"}, []string{"server:     imap.mail.yahoo.com:993", "username:   dave2\n"}},
		// --host given: no discovery; the username defaults to the address.
		{[]string{"--email", "erin@example.test", "--host", "mail.example.test"}, []string{
			"Settings as given", "server:     mail.example.test:993, security tls", "username:   erin@example.test", "name:       erin@example.test",
		}},
	}
	for _, tc := range tests {
		args := append([]string{"account", "add", "--dry-run"}, tc.args...)
		code, out, errOut := run(t, env, args...)
		if code != ExitOK {
			t.Errorf("%v: exit %d: %s%s", tc.args, code, out, errOut)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out, w) {
				t.Errorf("%v: output lacks %q:\n%s", tc.args, w, out)
			}
		}
	}

	// Without --dry-run the CLI says what it found, and the provider's
	// advice on the login; then it goes on (here to a store it cannot
	// reach).
	code, out, errOut := run(t, map[string]string{"MAILBUS_SERVER": "127.0.0.1:1", "MAILBUS_TOKEN": "mbt_x_y", "PW": "pw"},
		"account", "add", "--email", "dave@yahoo.com", "--password-env", "PW")
	if code != ExitError || !strings.Contains(out, "Found imap.mail.yahoo.com:993 (tls) for dave@yahoo.com from built-in preset Yahoo Mail.") ||
		!strings.Contains(errOut, "Note: Yahoo takes an app password") || !strings.Contains(errOut, "cannot reach the mailbus store") {
		t.Errorf("add without --dry-run: exit %d\n%s%s", code, out, errOut)
	}

	// --json: the API's message.
	code, out, errOut = run(t, env, "--json", "account", "add", "--dry-run", "--email", "alice@gmail.com")
	if code != ExitOK || !strings.Contains(out, `"source":"DISCOVERY_SOURCE_PRESET"`) || !strings.Contains(out, `"host":"imap.gmail.com"`) ||
		!strings.Contains(out, `"oauth2Provider":"OAUTH2_PROVIDER_GOOGLE"`) {
		t.Errorf("--json dry run: exit %d %s%s", code, out, errOut)
	}
	// Neither --host nor --email: the usage error names both.
	code, _, errOut = run(t, env, "account", "add", "--name", "x", "--protocol", "imap", "--username", "u")
	if code != ExitUsage || !strings.Contains(errOut, "--host") || !strings.Contains(errOut, "--email") {
		t.Errorf("no --host, no --email: exit %d %q", code, errOut)
	}

	code, _, errOut = run(t, env, "account", "add", "--dry-run", "--email", "alice@icloud.com", "--protocol", "pop3")
	if code != ExitError || !strings.Contains(errOut, "iCloud Mail offers no POP3") {
		t.Errorf("iCloud POP3: exit %d %q", code, errOut)
	}
	for _, bad := range []string{"alice", "alice@", "alice@bad_domain.test"} {
		code, _, errOut := run(t, env, "account", "add", "--dry-run", "--email", bad)
		if code != ExitUsage || !strings.Contains(errOut, "--email") {
			t.Errorf("--email %q: exit %d %q, want a usage error naming --email", bad, code, errOut)
		}
	}
}

// TestAccountAddEmailThroughTheStore: a domain without a preset is looked
// up by the store (autoconfig on a local server): --dry-run prints what
// was found and where and adds nothing; without it the account is added
// with those settings.
func TestAccountAddEmailThroughTheStore(t *testing.T) {
	lookups := discovertest.Start(t)
	lookups.ServeFile("example.test", "/.well-known/autoconfig/mail/config-v1.1.xml", `<clientConfig version="1.1"><emailProvider id="example.test">
  <displayName>Example Mail</displayName>
  <incomingServer type="imap"><hostname>imap.example.test</hostname><port>143</port><socketType>STARTTLS</socketType><username>%EMAILLOCALPART%</username></incomingServer>
</emailProvider></clientConfig>`)
	lookups.AddRecord(t, "example.test. 60 IN MX 10 mx.example.test.")
	data := filepath.Join(t.TempDir(), "data")
	addr := serveDiscovering(t, data, lookups)
	env := map[string]string{"MAILBUS_SERVER": addr, "MAILBUS_TOKEN_FILE": filepath.Join(data, "admin.token"), "PW": "pw"}

	code, out, errOut := run(t, env, "account", "add", "--email", "alice@example.test", "--dry-run")
	if code != ExitOK {
		t.Fatalf("dry run: exit %d %s%s", code, out, errOut)
	}
	for _, w := range []string{
		"Found by autoconfig https://example.test/.well-known/autoconfig/mail/config-v1.1.xml", "server:     imap.example.test:143, security starttls",
		"username:   alice\n", "provider:   Example Mail", "tried:      autoconfig https://autoconfig.example.test/mail/config-v1.1.xml?emailaddress=alice%40example.test: HTTP status 404",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("dry run output lacks %q:\n%s", w, out)
		}
	}
	if code, out, _ := run(t, env, "account", "list"); code != ExitOK || !strings.Contains(out, "No accounts yet") {
		t.Fatalf("the dry run added an account: %s", out)
	}

	// POP3: no autoconfig entry, no SRV: the MX, labelled a guess.
	code, out, errOut = run(t, env, "account", "add", "--email", "alice@example.test", "--protocol", "pop3", "--dry-run")
	if code != ExitOK || !strings.Contains(out, "Found by MX mx.example.test (a guess") || !strings.Contains(out, "server:     mx.example.test:995, security tls") ||
		!strings.Contains(out, "warning:    a guess") {
		t.Errorf("POP3 dry run: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut = run(t, env, "account", "add", "--email", "alice@example.test", "--password-env", "PW")
	if code != ExitOK || !strings.Contains(out, "Found imap.example.test:143 (starttls) for alice@example.test from autoconfig https://example.test/") ||
		!strings.Contains(out, "Added account alice@example.test") {
		t.Fatalf("add: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = run(t, env, "account", "show", "alice@example.test")
	if code != ExitOK || !strings.Contains(out, "imap.example.test:143, security starttls") || !strings.Contains(out, "username:   alice\n") {
		t.Errorf("account show:\n%s", out)
	}

	code, _, errOut = run(t, env, "account", "add", "--email", "bob@nothing.test", "--dry-run")
	if code != ExitError || !strings.Contains(errOut, "no IMAP server found for nothing.test") {
		t.Errorf("nothing found: exit %d %q", code, errOut)
	}
}
