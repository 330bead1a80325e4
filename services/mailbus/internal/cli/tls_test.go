package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
	"github.com/mailbus/mailbus/services/mailbus/demo"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// TestServeWithMutualTLS runs mailbus serve with a store that requires
// client certificates: the CLI gets in with the CA and a client
// certificate, and is refused without the certificate, with another CA or
// in plaintext; the fetchers inside the process reach the store (a POP3
// account's mail arrives).
func TestServeWithMutualTLS(t *testing.T) {
	ca, other := grpctlstest.NewCA(t, "mailbus"), grpctlstest.NewCA(t, "other")
	storeCert, storeKey := ca.Issue("store")
	cliCert, cliKey := ca.Issue("cli")
	// As serve does: a reloadable certificate, which the fetchers inside
	// the process pin (grpctls.PinnedTo).
	certs, err := grpctls.Server{CertFile: storeCert, KeyFile: storeKey, ClientCAFile: ca.File}.Load()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan mailbus.Info, 1)
	srv, err := mailbus.New(mailbus.Config{
		DataDir: filepath.Join(t.TempDir(), "data"), Listener: ln, MetricsListen: "-", TLSCerts: certs,
		AccountRefresh: 100 * time.Millisecond, Ready: func(i mailbus.Info) { ready <- i },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	var info mailbus.Info
	select {
	case info = <-ready:
	case err := <-done:
		t.Fatalf("stopped before ready: %v", err)
	}

	pop, err := demo.StartPOP3("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pop.Close() })
	pwFile := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pwFile, []byte(demo.POP3Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	env := map[string]string{"MAILBUS_SERVER": info.StoreAddr, "MAILBUS_TLS_CA": ca.File, "MAILBUS_TLS_CERT": cliCert, "MAILBUS_TLS_KEY": cliKey,
		"MAILBUS_TOKEN_FILE": info.AdminTokenFile}
	code, _, errOut := run(t, env, "account", "add", "--name", "pop", "--protocol", "pop3", "--host", "127.0.0.1",
		"--port", strconv.Itoa(pop.Addr().Port), "--security", "none", "--username", demo.POP3User, "--password-file", pwFile, "--poll", "1s")
	if code != ExitOK {
		t.Fatalf("account add over mutual TLS: exit %d: %s", code, errOut)
	}
	want := len(demo.POP3Messages())
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, out, errOut := run(t, env, "message", "list", "--account", "pop", "--mailbox", "INBOX", "--json")
		if code != ExitOK {
			t.Fatalf("message list: exit %d: %s", code, errOut)
		}
		if n := strings.Count(out, "\n"); n == want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the POP3 mail did not arrive through the in-process fetcher: %q", out)
		}
		time.Sleep(100 * time.Millisecond)
	}

	for _, tt := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"no client certificate", map[string]string{"MAILBUS_TLS_CA": ca.File}, "TLS handshake"},
		{"another CA", map[string]string{"MAILBUS_TLS_CA": other.File, "MAILBUS_TLS_CERT": cliCert, "MAILBUS_TLS_KEY": cliKey}, "TLS handshake"},
		{"plaintext", map[string]string{}, "cannot reach"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.env["MAILBUS_SERVER"] = info.StoreAddr
			code, out, errOut := run(t, tt.env, "--timeout", "5s", "account", "list")
			if code != ExitError || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 1 and %q", code, out, errOut, tt.want)
			}
		})
	}
}
