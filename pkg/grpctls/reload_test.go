package grpctls_test

import (
	"context"
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
	"github.com/mailbus/mailbus/pkg/serving"
)

// reloadable is a server whose certificate files a test replaces.
type reloadable struct {
	addr     string
	health   *serving.Server
	certs    *grpctls.Certs
	reloaded chan error
}

// serveReloadable copies the files into a directory of their own (so the
// test can replace them), serves with them and watches them with the
// interval.
func serveReloadable(t *testing.T, certFile, keyFile, clientCAFile string, interval time.Duration) (*reloadable, grpctls.Server) {
	t.Helper()
	dir := t.TempDir()
	srv := grpctls.Server{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	grpctlstest.ReplaceFile(t, srv.CertFile, certFile)
	grpctlstest.ReplaceFile(t, srv.KeyFile, keyFile)
	if clientCAFile != "" {
		srv.ClientCAFile = filepath.Join(dir, "ca.crt")
		grpctlstest.ReplaceFile(t, srv.ClientCAFile, clientCAFile)
	}
	certs, err := srv.Load()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := serving.New(serving.Config{Name: "test", Listener: lis, TLS: certs.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	r := &reloadable{addr: s.Addr().String(), health: s, certs: certs, reloaded: make(chan error, 16)}
	certs.Watch(ctx, grpctls.WatchOptions{Interval: interval, Reloaded: func(_ bool, err error) { r.reloaded <- err }})
	return r, srv
}

func (r *reloadable) waitReload(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.reloaded:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("no reload")
		return nil
	}
}

// servedName is grpctlstest.ServedName with a 10 s deadline.
func servedName(t *testing.T, conn *grpc.ClientConn) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return grpctlstest.ServedName(ctx, conn)
}

// watchHealth opens a health Watch stream on conn and reads its first
// status.
func watchHealth(t *testing.T, conn *grpc.ClientConn) healthpb.Health_WatchClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := healthpb.NewHealthClient(conn).Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := stream.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("first status on the stream: %v %v", resp, err)
	}
	return stream
}

// TestReloadOnSIGHUP: after the files are replaced and the process gets
// SIGHUP, a new connection sees the new certificate, while a connection
// made before keeps working, its open stream included.
func TestReloadOnSIGHUP(t *testing.T) {
	ca := grpctlstest.NewCA(t, "ca")
	firstCert, firstKey := ca.Issue("first")
	secondCert, secondKey := ca.Issue("second")
	r, srv := serveReloadable(t, firstCert, firstKey, "", -1)
	client := grpctls.Client{CAFile: ca.File}
	clientCfg, err := client.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	before := grpctlstest.Dial(t, r.addr, clientCfg)
	if name, err := servedName(t, before); err != nil || name != "first" {
		t.Fatalf("before the reload: served %q, %v", name, err)
	}
	stream := watchHealth(t, before)

	grpctlstest.ReplaceFile(t, srv.CertFile, secondCert)
	grpctlstest.ReplaceFile(t, srv.KeyFile, secondKey)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if err := r.waitReload(t); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if name, err := servedName(t, grpctlstest.Dial(t, r.addr, clientCfg)); err != nil || name != "second" {
		t.Fatalf("new connection after the reload: served %q, %v; want the new certificate", name, err)
	}
	// The established connection and its stream are untouched.
	if name, err := servedName(t, before); err != nil || name != "first" {
		t.Fatalf("established connection after the reload: %q, %v", name, err)
	}
	r.health.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if resp, err := stream.Recv(); err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("established stream after the reload: %v %v", resp, err)
	}
}

// TestReloadOnChange: a change of the files is picked up without a signal;
// files that do not load (a key of another certificate) keep the previous
// certificate and are reported once.
func TestReloadOnChange(t *testing.T) {
	ca := grpctlstest.NewCA(t, "ca")
	firstCert, firstKey := ca.Issue("first")
	secondCert, secondKey := ca.Issue("second")
	thirdCert, _ := ca.Issue("third")
	r, srv := serveReloadable(t, firstCert, firstKey, "", 5*time.Millisecond)
	clientCfg, err := grpctls.Client{CAFile: ca.File}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}

	grpctlstest.ReplaceFile(t, srv.KeyFile, secondKey)
	grpctlstest.ReplaceFile(t, srv.CertFile, secondCert)
	// The poll may see the new key before the new certificate: a failed
	// attempt, then the reload.
	for err := r.waitReload(t); err != nil; err = r.waitReload(t) {
	}
	if name, err := servedName(t, grpctlstest.Dial(t, r.addr, clientCfg)); err != nil || name != "second" {
		t.Fatalf("after the change: served %q, %v", name, err)
	}

	grpctlstest.ReplaceFile(t, srv.CertFile, thirdCert) // the second one's key stays: no match
	if err := r.waitReload(t); err == nil {
		t.Fatal("a certificate with another one's key loaded")
	}
	if name, err := servedName(t, grpctlstest.Dial(t, r.addr, clientCfg)); err != nil || name != "second" {
		t.Fatalf("after a failed reload: served %q, %v; want the previous certificate", name, err)
	}
	select {
	case err := <-r.reloaded:
		t.Fatalf("the same broken files were tried again: %v", err)
	default:
	}
}

// TestReloadClientCA: replacing --tls-client-ca lets clients of the new CA
// in and refuses new connections of the old one; a client connected
// before keeps its connection.
func TestReloadClientCA(t *testing.T) {
	serverCA, oldCA, newCA := grpctlstest.NewCA(t, "server-ca"), grpctlstest.NewCA(t, "old-ca"), grpctlstest.NewCA(t, "new-ca")
	serverCert, serverKey := serverCA.Issue("server")
	r, srv := serveReloadable(t, serverCert, serverKey, oldCA.File, -1)
	oldClientCert, oldClientKey := oldCA.Issue("old-client")
	newClientCert, newClientKey := newCA.Issue("new-client")
	clientOf := func(cert, key string) *tls.Config {
		cfg, err := grpctls.Client{CAFile: serverCA.File, CertFile: cert, KeyFile: key}.TLSConfig()
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	before := grpctlstest.Dial(t, r.addr, clientOf(oldClientCert, oldClientKey))
	if _, err := servedName(t, before); err != nil {
		t.Fatalf("client of the old CA before the reload: %v", err)
	}
	if _, err := servedName(t, grpctlstest.Dial(t, r.addr, clientOf(newClientCert, newClientKey))); err == nil {
		t.Fatal("client of the new CA accepted before the reload")
	}

	grpctlstest.ReplaceFile(t, srv.ClientCAFile, newCA.File)
	if changed, err := r.certs.Reload(); err != nil || !changed {
		t.Fatalf("Reload: changed %v, %v", changed, err)
	}
	if _, err := servedName(t, grpctlstest.Dial(t, r.addr, clientOf(newClientCert, newClientKey))); err != nil {
		t.Fatalf("client of the new CA after the reload: %v", err)
	}
	if _, err := servedName(t, grpctlstest.Dial(t, r.addr, clientOf(oldClientCert, oldClientKey))); err == nil {
		t.Fatal("new connection of a client of the old CA accepted after the reload")
	}
	if _, err := servedName(t, before); err != nil {
		t.Fatalf("established connection of the old CA's client after the reload: %v", err)
	}
}

// TestPinnedToFollowsReload: a process's own client (PinnedTo) accepts the
// server's certificate after a reload, and presents the new one.
func TestPinnedToFollowsReload(t *testing.T) {
	ca := grpctlstest.NewCA(t, "ca")
	firstCert, firstKey := ca.Issue("first")
	secondCert, secondKey := ca.Issue("second")
	r, srv := serveReloadable(t, firstCert, firstKey, "", -1)
	own := grpctls.PinnedTo(r.certs)
	if name, err := servedName(t, grpctlstest.Dial(t, r.addr, own)); err != nil || name != "first" {
		t.Fatalf("pinned before the reload: %q, %v", name, err)
	}
	grpctlstest.ReplaceFile(t, srv.CertFile, secondCert)
	grpctlstest.ReplaceFile(t, srv.KeyFile, secondKey)
	if _, err := r.certs.Reload(); err != nil {
		t.Fatal(err)
	}
	if name, err := servedName(t, grpctlstest.Dial(t, r.addr, own)); err != nil || name != "second" {
		t.Fatalf("pinned after the reload: %q, %v", name, err)
	}
	other := grpctlstest.NewCA(t, "other")
	otherCert, otherKey := other.Issue("first")
	pair, err := tls.LoadX509KeyPair(otherCert, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := servedName(t, grpctlstest.Dial(t, r.addr, grpctls.PinnedTo(mustCerts(t, otherCert, otherKey)))); err == nil {
		t.Fatalf("a client pinned to another certificate (%v) accepted the server", pair.Leaf.Subject)
	}
}

func mustCerts(t *testing.T, certFile, keyFile string) *grpctls.Certs {
	t.Helper()
	c, err := grpctls.Server{CertFile: certFile, KeyFile: keyFile}.Load()
	if err != nil {
		t.Fatal(err)
	}
	return c
}
