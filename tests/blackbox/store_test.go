package blackbox

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// buildStore builds mailbus-store into a temporary directory.
func buildStore(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "mailbus-store")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/mailbus/mailbus/services/store/cmd/mailbus-store")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type storeProc struct {
	cmd *exec.Cmd
	out *syncBuffer
	// grpcAddr and httpAddr are where the store listens, known after
	// waitServing.
	grpcAddr string
	httpAddr string
	done     chan error
}

// startStore starts the store with its gRPC and metrics listeners on ports
// of their choosing (args may name a --listen); waitServing learns them.
//
// Port 0 lets the store's own listeners take the ports: a port the test
// found free and released could be taken by another process (a client's
// outgoing connection, another test) before the store bound it.
func startStore(t *testing.T, bin, dataDir string, env []string, args ...string) *storeProc {
	t.Helper()
	p := &storeProc{out: &syncBuffer{}, done: make(chan error, 1)}
	p.cmd = exec.Command(bin, append([]string{"--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0", "--data", dataDir, "--nats", ""}, args...)...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("store output:\n%s", p.out)
		}
	})
	return p
}

// waitServing waits for the store's log line "serving" and takes the
// addresses it names.
func (p *storeProc) waitServing(t *testing.T) {
	t.Helper()
	deadline := time.After(waitStart)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		for _, l := range strings.Split(p.out.String(), "\n") {
			if !strings.Contains(l, "msg=serving") {
				continue
			}
			for _, f := range strings.Fields(l) {
				if a, ok := strings.CutPrefix(f, "grpc="); ok {
					p.grpcAddr = a
				}
				if a, ok := strings.CutPrefix(f, "metrics="); ok {
					p.httpAddr = a
				}
			}
			if p.grpcAddr == "" || p.httpAddr == "" {
				t.Fatalf("log line %q: want grpc= and metrics= addresses", l)
			}
			return
		}
		select {
		case err := <-p.done:
			p.done <- err // for the cleanup's wait
			t.Fatalf("store exited before it served: %v\n%s", err, p.out)
		case <-deadline:
			t.Fatalf("store not serving in time:\n%s", p.out)
		case <-tick.C:
		}
	}
}

// waitStart bounds the wait for a store to start serving.
const waitStart = 30 * time.Second

func (p *storeProc) waitHealthy(t *testing.T) {
	t.Helper()
	p.waitServing(t)
	deadline := time.Now().Add(waitStart)
	for time.Now().Before(deadline) {
		resp, err := httpClient.Get("http://" + p.httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-p.done:
			t.Fatalf("store exited early: %v\n%s", err, p.out)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("store not healthy in time:\n%s", p.out)
}

// httpClient bounds every request: a port taken meanwhile by another
// process that accepts but never answers must fail the test, not hang it.
var httpClient = &http.Client{Timeout: 5 * time.Second}

func newKey() string {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i * 7)
	}
	return base64.StdEncoding.EncodeToString(k)
}

func TestStoreRefusesToStartWithoutKey(t *testing.T) {
	bin := buildStore(t)
	p := startStore(t, bin, filepath.Join(t.TempDir(), "data"), nil)
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		if err == nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v, want status 1", err)
		}
		if !strings.Contains(p.out.String(), "no credentials encryption key") {
			t.Fatalf("message does not say what is missing:\n%s", p.out)
		}
		p.done <- err
	case <-time.After(20 * time.Second):
		t.Fatal("store started without a key")
	}
}

func TestStoreUsageErrorsExitTwo(t *testing.T) {
	bin := buildStore(t)
	for _, args := range [][]string{{"--no-such-flag"}, {"stray-argument"}, {"--log-level", "loud"}} {
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("%v: exit %v, want 2\n%s", args, err, out)
		}
	}
	out, err := exec.Command(bin, "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--database-url") || !strings.Contains(string(out), "MAILBUS_NATS") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	// The Go flag package's single-dash spelling still works for one
	// release (issue 16): the value is read, with a warning.
	out, err = exec.Command(bin, "-log-level", "loud").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 ||
		!strings.Contains(string(out), "-log-level is deprecated, use --log-level") || !strings.Contains(string(out), `log level "loud"`) {
		t.Errorf("-log-level loud: exit %v, want 2 with a deprecation warning and the bad level\n%s", err, out)
	}
}

func TestStoreLifecycle(t *testing.T) {
	bin := buildStore(t)
	data := filepath.Join(t.TempDir(), "data")
	env := []string{"MAILBUS_SECRET_KEY=" + newKey()}
	serviceTokenFile := filepath.Join(t.TempDir(), "service.token")
	p := startStore(t, bin, data, env, "--service-token-file", serviceTokenFile)
	p.waitHealthy(t)

	// Both token files are made on first start, readable only by the
	// owner; the default admin token file is in --data.
	var adminToken, serviceToken string
	for _, f := range []struct {
		path  string
		token *string
	}{{filepath.Join(data, "admin.token"), &adminToken}, {serviceTokenFile, &serviceToken}} {
		st, err := os.Stat(f.path)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("token file %s: %v %v, want mode 0600", f.path, st, err)
		}
		if *f.token, err = apitoken.ReadFile(f.path); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	noToken, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer noToken.Close()
	if _, err := mailbusv1.NewAccountServiceClient(noToken).ListAccounts(ctx, &mailbusv1.ListAccountsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a call without a token: %v, want Unauthenticated", err)
	}
	conn, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "mailbus.v1.MailboxService"})
	if err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}
	accounts := mailbusv1.NewAccountServiceClient(conn)
	created, err := accounts.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "work", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "imap.example.com", Port: 993,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "alice", Secret: "hunter2",
	}})
	if err != nil {
		t.Fatal(err)
	}
	metrics := httpGet(t, "http://"+p.httpAddr+"/metrics")
	if !strings.Contains(metrics, `mailbus_grpc_requests_total{code="OK",method="/mailbus.v1.AccountService/CreateAccount",service="store"} 1`) {
		t.Fatalf("metrics lack the CreateAccount call:\n%s", grep(metrics, "mailbus_"))
	}
	if !strings.Contains(metrics, "mailbus_store_outbox_backlog 1") {
		t.Fatalf("outbox backlog (no NATS) not 1:\n%s", grep(metrics, "outbox"))
	}
	// The password and the tokens never show in the logs.
	for _, secret := range []string{"hunter2", adminToken, serviceToken} {
		if strings.Contains(p.out.String(), secret) {
			t.Fatal("a secret in the log")
		}
	}

	// SIGTERM: a clean, prompt exit.
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
		p.done <- err
	case <-time.After(15 * time.Second):
		t.Fatal("no exit within 15s of SIGTERM")
	}

	// Restart on the same data: the account and its secret are there.
	// The same tokens work.
	p2 := startStore(t, bin, data, env, "--service-token-file", serviceTokenFile)
	p2.waitHealthy(t)
	conn2, err := grpc.NewClient(p2.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(adminToken))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	service, err := grpc.NewClient(p2.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(serviceToken))
	if err != nil {
		t.Fatal(err)
	}
	defer service.Close()
	got, err := mailbusv1.NewAccountServiceClient(conn2).GetAccount(ctx, &mailbusv1.GetAccountRequest{Name: "work"})
	if err != nil || got.Account.Id != created.Account.Id {
		t.Fatalf("after restart: %v %v", got, err)
	}
	if _, err := mailbusv1.NewIngestServiceClient(conn2).GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: got.Account.Id}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("the admin token reads a secret: %v, want PermissionDenied", err)
	}
	sec, err := mailbusv1.NewIngestServiceClient(service).GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: got.Account.Id})
	if err != nil || sec.Secret != "hunter2" {
		t.Fatalf("secret after restart: %v", err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
