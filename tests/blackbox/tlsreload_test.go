package blackbox

import (
	"context"
	"crypto/tls"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
)

// TestStoreReloadsCertificateOnSIGHUP: mailbus-store serving TLS gets new
// certificate files and SIGHUP; a new connection sees the new
// certificate, and a WatchChanges stream opened before keeps delivering.
func TestStoreReloadsCertificateOnSIGHUP(t *testing.T) {
	bin := buildStore(t)
	ca := grpctlstest.NewCA(t, "mailbus")
	firstCert, firstKey := ca.Issue("first")
	secondCert, secondKey := ca.Issue("second")
	tlsDir := t.TempDir()
	certFile, keyFile := filepath.Join(tlsDir, "tls.crt"), filepath.Join(tlsDir, "tls.key")
	grpctlstest.ReplaceFile(t, certFile, firstCert)
	grpctlstest.ReplaceFile(t, keyFile, firstKey)
	data := filepath.Join(t.TempDir(), "data")
	serviceTokenFile := filepath.Join(t.TempDir(), "service.token")
	p := startStore(t, bin, data, []string{"MAILBUS_SECRET_KEY=" + newKey()},
		"--tls-cert", certFile, "--tls-key", keyFile, "--service-token-file", serviceTokenFile)
	p.waitServing(t)
	clientTLS, err := grpctls.Client{CAFile: ca.File}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	adminConn := dialStoreTLS(t, p.grpcAddr, clientTLS, "")
	if _, err := healthpb.NewHealthClient(adminConn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("store not serving: %v\n%s", err, p.out)
	}
	adminToken, err := apitoken.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	serviceToken, err := apitoken.ReadFile(serviceTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	before := dialStoreTLS(t, p.grpcAddr, clientTLS, adminToken)
	if name := presented(ctx, t, before); name != "first" {
		t.Fatalf("before the reload the store presented %q", name)
	}
	created, err := mailbusv1.NewAccountServiceClient(before).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "reload", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "127.0.0.1", Port: 1,
		Security: mailbusv1.Security_SECURITY_NONE, Username: "u", Secret: "p",
	}})
	if err != nil {
		t.Fatal(err)
	}
	acct := created.Account
	stream, err := mailbusv1.NewSyncServiceClient(before).WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: acct.Id})
	if err != nil {
		t.Fatal(err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("watch before the reload: %v", err)
		}
		if resp.CaughtUp {
			break
		}
	}

	grpctlstest.ReplaceFile(t, certFile, secondCert)
	grpctlstest.ReplaceFile(t, keyFile, secondKey)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "TLS certificate reloaded")
	after := dialStoreTLS(t, p.grpcAddr, clientTLS, serviceToken)
	if name := presented(ctx, t, after); name != "second" {
		t.Fatalf("a new connection after SIGHUP was presented %q, want the new certificate", name)
	}
	// The stream opened before the reload still delivers.
	if _, err := mailbusv1.NewIngestServiceClient(after).ReportAccountStatus(ctx, &mailbusv1.ReportAccountStatusRequest{
		AccountId: acct.Id, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE},
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil || resp.GetEvent().GetAccountStatus().GetStatus().GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE {
		t.Fatalf("stream opened before the reload: %v, %v; want the account.status event", resp, err)
	}
	if name := presented(ctx, t, before); name != "first" {
		t.Fatalf("the connection made before the reload now reports %q", name)
	}
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup's wait
		t.Fatalf("the store exited after SIGHUP: %v", err)
	default:
	}
}

func dialStoreTLS(t *testing.T, addr string, cfg *tls.Config, token string) *grpc.ClientConn {
	t.Helper()
	if token == "" {
		return grpctlstest.Dial(t, addr, cfg)
	}
	return grpctlstest.Dial(t, addr, cfg, apitoken.DialOption(token))
}

// presented returns the common name of the certificate the server
// presented on conn.
func presented(ctx context.Context, t *testing.T, conn *grpc.ClientConn) string {
	t.Helper()
	name, err := grpctlstest.ServedName(ctx, conn)
	if err != nil {
		t.Fatalf("health check: %v", err)
	}
	if name == "" {
		t.Fatal("no TLS peer certificate")
	}
	return name
}

// waitLog waits until the store's output holds s (the process writes it
// to a buffer, which has no notification: it is read every 10 ms).
func (p *storeProc) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !strings.Contains(p.out.String(), s) {
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup's wait
			t.Fatalf("store exited waiting for %q: %v\n%s", s, err, p.out)
		case <-deadline:
			t.Fatalf("no %q in the store's output:\n%s", s, p.out)
		case <-tick.C:
		}
	}
}
