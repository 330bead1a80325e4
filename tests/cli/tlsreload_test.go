package cli

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
)

// TestServeReloadsCertificateOnSIGHUP: `mailbus serve` with TLS gets new
// certificate files and SIGHUP: it keeps running, a new connection is
// presented the new certificate, one made before keeps the old one, and
// the CLI still works against it.
func TestServeReloadsCertificateOnSIGHUP(t *testing.T) {
	ca := grpctlstest.NewCA(t, "mailbus")
	firstCert, firstKey := ca.Issue("first")
	secondCert, secondKey := ca.Issue("second")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	grpctlstest.ReplaceFile(t, certFile, firstCert)
	grpctlstest.ReplaceFile(t, keyFile, firstKey)
	c, p, _ := startServe(t, "--tls-cert", certFile, "--tls-key", keyFile)
	clientTLS, err := grpctls.Client{CAFile: ca.File}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	before := grpctlstest.Dial(t, c.server, clientTLS)
	if name := presentedName(t, before); name != "first" {
		t.Fatalf("before the reload: presented %q", name)
	}

	grpctlstest.ReplaceFile(t, certFile, secondCert)
	grpctlstest.ReplaceFile(t, keyFile, secondKey)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	// serve logs to stderr, a buffer without notification: read it every
	// 10 ms.
	deadline := time.After(waitLong)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.stderr.String(), "TLS certificate reloaded") {
		select {
		case <-p.done:
			t.Fatalf("serve exited after SIGHUP: %v\n%s", p.err, p.stderr)
		case <-deadline:
			t.Fatalf("no reload logged:\n%s", p.stderr)
		case <-tick.C:
		}
	}
	if name := presentedName(t, grpctlstest.Dial(t, c.server, clientTLS)); name != "second" {
		t.Fatalf("new connection after SIGHUP: presented %q, want the new certificate", name)
	}
	if name := presentedName(t, before); name != "first" {
		t.Fatalf("connection made before the reload: %q", name)
	}
	c.ok("--tls-ca", ca.File, "account", "list")
}

// presentedName returns the common name of the certificate the server
// presented on conn.
func presentedName(t *testing.T, conn *grpc.ClientConn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	name, err := grpctlstest.ServedName(ctx, conn)
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if name == "" {
		t.Fatal("no TLS peer certificate")
	}
	return name
}
