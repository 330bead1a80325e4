package cli

import (
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

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
	replaceFile(t, certFile, firstCert)
	replaceFile(t, keyFile, firstKey)
	c, p, _ := startServe(t, "--tls-cert", certFile, "--tls-key", keyFile)
	clientTLS, err := grpctls.Client{CAFile: ca.File}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	before := dialTLS(t, c.server, clientTLS)
	if name := presentedName(t, before); name != "first" {
		t.Fatalf("before the reload: presented %q", name)
	}

	replaceFile(t, certFile, secondCert)
	replaceFile(t, keyFile, secondKey)
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
	if name := presentedName(t, dialTLS(t, c.server, clientTLS)); name != "second" {
		t.Fatalf("new connection after SIGHUP: presented %q, want the new certificate", name)
	}
	if name := presentedName(t, before); name != "first" {
		t.Fatalf("connection made before the reload: %q", name)
	}
	c.ok("--tls-ca", ca.File, "account", "list")
}

func replaceFile(t *testing.T, dst, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dst+".new", dst); err != nil {
		t.Fatal(err)
	}
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// presentedName returns the common name of the certificate the server
// presented on conn.
func presentedName(t *testing.T, conn *grpc.ClientConn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		t.Fatalf("health check: %v", err)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 {
		t.Fatal("no TLS peer certificate")
	}
	return info.State.PeerCertificates[0].Subject.CommonName
}
