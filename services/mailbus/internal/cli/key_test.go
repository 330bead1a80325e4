package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// serveFor runs mailbus serve on data with the key files given (empty:
// the data directory's) until stop is called; it returns the store's
// address and its fetchers' service token (the API makes none).
func serveFor(t *testing.T, data, keyFile, oldKeyFiles string) (addr, serviceToken string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := (&app{io: IO{Getenv: func(string) (string, bool) { return "", false }}}).serverConfig(&serveFlags{
		data: data, keyFile: keyFile, oldKeyFiles: oldKeyFiles, metricsListen: "-", listen: "127.0.0.1:0",
		logLevel: "error", logFormat: "text", retention: time.Hour, maxMessageSize: 1 << 20, eventsReplicas: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listener = ln
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
	select {
	case info := <-ready:
		return info.StoreAddr, cfg.ServiceToken, func() { cancel(); <-done }
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	return "", "", nil
}

// accountSecret reads a secret as a fetcher does, with the service token
// of serve's fetchers.
func accountSecret(t *testing.T, addr, serviceToken, id string) (string, error) {
	t.Helper()
	dial := func(token string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(token))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := mailbusv1.NewIngestServiceClient(dial(serviceToken)).GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: id})
	return r.GetSecret(), err
}

// TestKeyRotate: key generate, then key rotate while serve runs with the
// new key and the old one; afterwards the new key alone opens the stored
// password.
func TestKeyRotate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	oldKey := filepath.Join(data, mailbus.KeyFileName)
	newKey := filepath.Join(t.TempDir(), "new.key")
	addr, svc, stop := serveFor(t, data, "", "")
	env := map[string]string{"MAILBUS_SERVER": addr, "PW": "the-upstream-password", "MAILBUS_TOKEN_FILE": filepath.Join(data, "admin.token")}
	if code, _, errOut := run(t, env, "account", "add", "--name", "work", "--protocol", "pop3", "--host", "127.0.0.1", "--port", "1",
		"--security", "none", "--username", "u", "--password-env", "PW"); code != ExitOK {
		t.Fatalf("account add: %s", errOut)
	}
	stop()

	if code, out, errOut := run(t, nil, "key", "generate", newKey); code != ExitOK || !strings.Contains(out, "wrote a new key") {
		t.Fatalf("key generate: %d %s%s", code, out, errOut)
	}
	if code, _, _ := run(t, nil, "key", "generate", newKey); code != ExitError {
		t.Fatal("key generate overwrote a key file")
	}
	addr, svc, stop = serveFor(t, data, newKey, oldKey)
	rotate := []string{"key", "rotate", "--data", data, "--secret-key-file", newKey, "--old-secret-key-file", oldKey}
	code, out, errOut := run(t, nil, rotate...)
	if code != ExitOK || !strings.Contains(out, "sealed 1 credentials") {
		t.Fatalf("key rotate: %d %s%s", code, out, errOut)
	}
	if pw, err := accountSecret(t, addr, svc, "1"); err != nil || pw != "the-upstream-password" {
		t.Fatalf("the serving store after the rotation: %q %v", pw, err)
	}
	stop()
	if code, out, _ := run(t, nil, rotate...); code != ExitOK || !strings.Contains(out, "sealed 0 credentials") || !strings.Contains(out, "1 already") {
		t.Fatalf("second rotation: %d %s", code, out)
	}
	addr, svc, stop = serveFor(t, data, newKey, "")
	defer stop()
	if pw, err := accountSecret(t, addr, svc, "1"); err != nil || pw != "the-upstream-password" {
		t.Fatalf("with the new key alone: %q %v", pw, err)
	}
	if code, _, _ := run(t, nil, "key", "rotate", "--data", data, "--secret-key-file", newKey); code != ExitUsage {
		t.Fatalf("rotate without --old-secret-key-file: exit %d", code)
	}
	// A --data that is not the store's (a missing directory, or one
	// without the database) is refused, and no database is made there
	// (issue 16).
	empty := t.TempDir()
	for _, dir := range []string{filepath.Join(empty, "missing"), empty} {
		code, _, errOut := run(t, nil, "key", "rotate", "--data", dir, "--secret-key-file", newKey, "--old-secret-key-file", oldKey)
		if code != ExitUsage || !strings.Contains(errOut, "give --data") {
			t.Errorf("rotate --data %s: exit %d, want %d: %s", dir, code, ExitUsage, errOut)
		}
	}
	if entries, err := os.ReadDir(empty); err != nil || len(entries) != 0 {
		t.Errorf("rotate made files in a directory not the store's: %v %v", entries, err)
	}
}
