package mailbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

const waitLong = 60 * time.Second

// running is a started server.
type running struct {
	info   mailbus.Info
	cancel context.CancelFunc
	done   chan error
}

func start(t *testing.T, cfg mailbus.Config) *running {
	t.Helper()
	if cfg.Listener == nil {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		cfg.Listener = ln
	}
	cfg.MetricsListen = "-"
	ready := make(chan mailbus.Info, 1)
	cfg.Ready = func(i mailbus.Info) { ready <- i }
	srv, err := mailbus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- srv.Run(ctx) }()
	select {
	case r.info = <-ready:
	case err := <-r.done:
		t.Fatalf("stopped before ready: %v", err)
	case <-time.After(waitLong):
		t.Fatal("not ready in time")
	}
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the server and waits for a clean return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("no clean stop in time")
	}
}

// dial connects to the server's store with its admin token.
func dial(t *testing.T, info mailbus.Info) *grpc.ClientConn {
	t.Helper()
	token, err := apitoken.ReadFile(info.AdminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	return dialToken(t, info.StoreAddr, token)
}

func dialToken(t *testing.T, addr, token string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestFirstStartCreatesKeyAndRestartKeepsIt: the first start creates the
// credentials key (mode 0600) in the data directory; a restart reuses it,
// so a stored password still opens; events reach JetStream on the
// embedded server, which serves consumers on NATSListen.
func TestFirstStartCreatesKeyAndRestartKeepsIt(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	r := start(t, mailbus.Config{DataDir: data, NATSListen: "127.0.0.1:0"})
	keyFile := filepath.Join(data, mailbus.KeyFileName)
	if !r.info.KeyCreated || r.info.KeyFile != keyFile {
		t.Fatalf("info %+v: want the key created at %s", r.info, keyFile)
	}
	st, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", st.Mode().Perm())
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	tokenFile := filepath.Join(data, "admin.token")
	if r.info.AdminTokenFile != tokenFile {
		t.Fatalf("admin token file %q, want %q", r.info.AdminTokenFile, tokenFile)
	}
	if st, err := os.Stat(tokenFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("admin token file: %v %v, want mode 0600", st, err)
	}
	conn := dial(t, r.info)
	created, err := mailbusv1.NewAccountServiceClient(conn).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "local", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "127.0.0.1", Port: 1,
		Security: mailbusv1.Security_SECURITY_NONE, Username: "u", Secret: "the-password",
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Without a user, the embedded NATS server lets nobody in.
	if r.info.NATSURL == "" {
		t.Fatal("no NATS URL for consumers")
	}
	if nc, err := nats.Connect(r.info.NATSURL, nats.Timeout(waitLong)); err == nil {
		nc.Close()
		t.Fatal("the embedded NATS server let a connection without a user in")
	}
	// A consumer user with a plain password: a bcrypt check under the race
	// detector takes seconds, more than a NATS client waits to connect
	// (AddNATSUser's hashes are tested in pkg/natsperm and the CLI).
	user := natsperm.Consumer{User: "backend", Password: "backend-password", AccountID: created.Account.Id}
	password := user.Password
	usersJSON, err := json.Marshal([]natsperm.Consumer{user})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, mailbus.NATSUsersFileName), usersJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	r.stop(t)

	key, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// The fetchers' service token, given so that the test can read a
	// secret as they do (the API makes no service tokens).
	serviceToken, _, err := apitoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	r2 := start(t, mailbus.Config{DataDir: data, NATSListen: "127.0.0.1:0", ServiceToken: serviceToken})
	if r2.info.KeyCreated {
		t.Fatalf("restart: %+v", r2.info)
	}
	// A backend consumer with the account's consumer user sees the
	// account's events, published before the restart.
	nc, err := nats.Connect(r2.info.NATSURL, nats.UserInfo(user.User, password), nats.Timeout(waitLong))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithAPIPrefix(nc, natsperm.ConsumerAPIPrefix)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, events.StreamName, user.User)
	if err != nil {
		t.Fatalf("the user's consumer: %v", err)
	}
	msg, err := cons.Next(jetstream.FetchContext(ctx))
	if err != nil {
		t.Fatalf("no event on NATS: %v", err)
	}
	if ev, err := events.Unmarshal(msg.Data()); err != nil || ev.AccountId != created.Account.Id {
		t.Fatalf("event %v %v", ev, err)
	}
	nc.Close()
	if again, _ := os.ReadFile(keyFile); string(again) != string(key) {
		t.Fatal("the key file changed on restart")
	}
	// The same admin token works after the restart, but it cannot make a
	// service token; the fetchers' one reads the secret.
	if _, err := mailbusv1.NewTokenServiceClient(dial(t, r2.info)).CreateToken(ctx, &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: "test fetcher", Role: mailbusv1.TokenRole_TOKEN_ROLE_SERVICE,
	}}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("an admin token made a service token: %v, want PERMISSION_DENIED", err)
	}
	conn2 := dialToken(t, r2.info.StoreAddr, serviceToken)
	sec, err := mailbusv1.NewIngestServiceClient(conn2).GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: created.Account.Id})
	if err != nil || sec.Secret != "the-password" {
		t.Fatalf("secret after restart: %v %v", sec, err)
	}
}

// TestGivenKey: a key given directly or as a file is used, and no key file
// is created.
func TestGivenKey(t *testing.T) {
	k, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(t.TempDir(), "data")
	r := start(t, mailbus.Config{DataDir: data, SecretKey: k})
	if r.info.KeyCreated || r.info.KeyFile != "" {
		t.Fatalf("info %+v", r.info)
	}
	r.stop(t)
	keyFile := filepath.Join(t.TempDir(), "given.key")
	if err := secretbox.WriteKeyFile(keyFile, k); err != nil {
		t.Fatal(err)
	}
	r = start(t, mailbus.Config{DataDir: data, SecretKeyFile: keyFile})
	if r.info.KeyCreated || r.info.KeyFile != keyFile {
		t.Fatalf("info %+v", r.info)
	}
	if _, err := os.Stat(filepath.Join(data, mailbus.KeyFileName)); !os.IsNotExist(err) {
		t.Fatalf("a key file was created next to a given key: %v", err)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := mailbus.New(mailbus.Config{NATSURL: "nats://127.0.0.1:4222", NATSListen: "127.0.0.1:4222"}); err == nil {
		t.Error("--nats with --nats-listen accepted")
	}
	if _, err := mailbus.New(mailbus.Config{NATSListen: "no-port"}); err == nil {
		t.Error("--nats-listen without a port accepted")
	}
	if _, err := mailbus.New(mailbus.Config{Listen: "0.0.0.0:7400"}); !errors.Is(err, grpctls.ErrPlaintextNotLoopback) {
		t.Errorf("plaintext gRPC on 0.0.0.0 without --insecure: err = %v", err)
	}
	if _, err := mailbus.New(mailbus.Config{Listen: "0.0.0.0:7400", Insecure: true}); err != nil {
		t.Errorf("plaintext gRPC on 0.0.0.0 with --insecure: %v", err)
	}
	if _, err := mailbus.New(mailbus.Config{MetricsListen: "0.0.0.0:7401"}); !errors.Is(err, grpctls.ErrPlaintextNotLoopback) || !strings.Contains(err.Error(), "--metrics-listen") {
		t.Errorf("plaintext metrics on 0.0.0.0 without --insecure: err = %v", err)
	}
	if _, err := mailbus.New(mailbus.Config{MetricsListen: "0.0.0.0:7401", Insecure: true}); err != nil {
		t.Errorf("plaintext metrics on 0.0.0.0 with --insecure: %v", err)
	}
	if _, err := mailbus.New(mailbus.Config{NATSListen: "0.0.0.0:4222"}); err == nil || !strings.Contains(err.Error(), "plaintext") {
		t.Errorf("embedded NATS on 0.0.0.0 without --insecure: err = %v", err)
	}
	if _, err := mailbus.New(mailbus.Config{NATSListen: "0.0.0.0:4222", Insecure: true}); err != nil {
		t.Errorf("embedded NATS on 0.0.0.0 with --insecure: %v", err)
	}
}

// TestDataDirLocked: a second server on the same data directory fails at
// once, naming the first one's process.
func TestDataDirLocked(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	start(t, mailbus.Config{DataDir: data})
	second, err := mailbus.New(mailbus.Config{DataDir: data, Listen: "127.0.0.1:0", MetricsListen: "-"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	err = second.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "in use by another mailbus (pid "+strconv.Itoa(os.Getpid())+")") {
		t.Fatalf("second server on the same data directory: %v", err)
	}
}

// TestDataDirIsPrivate: serve creates its data directory 0700, and the
// files it writes there 0600 (the database and its -wal and -shm files,
// the credentials key, the admin token, the lock); a pre-created data
// directory that other users can enter is refused with the chmod command
// that fixes it, before anything is written there.
func TestDataDirIsPrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	r := start(t, mailbus.Config{DataDir: data})
	conn := dial(t, r.info)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	if _, err := mailbusv1.NewAccountServiceClient(conn).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "private", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "127.0.0.1", Port: 1,
		Security: mailbusv1.Security_SECURITY_NONE, Username: "u", Secret: "the-password",
	}}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(data); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data directory: %v %v, want mode 0700", fi, err)
	}
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		fi, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		seen[e.Name()] = true
		want := os.FileMode(0o600)
		if e.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", e.Name(), fi.Mode().Perm(), want)
		}
	}
	for _, name := range []string{"mailbus.db", "mailbus.db-wal", "mailbus.db-shm", mailbus.KeyFileName, "admin.token"} {
		if !seen[name] {
			t.Errorf("no %s in the data directory (found %v)", name, seen)
		}
	}
	r.stop(t)

	open := t.TempDir()
	if err := os.Chmod(open, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := mailbus.New(mailbus.Config{DataDir: open, Listen: "127.0.0.1:0", MetricsListen: "-"})
	if err != nil {
		t.Fatal(err)
	}
	err = srv.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "chmod 700 "+open) {
		t.Fatalf("serve on a 0755 data directory: %v; want a refusal with the chmod command", err)
	}
	if entries, _ := os.ReadDir(open); len(entries) != 0 {
		t.Errorf("files written to the refused data directory: %v", entries)
	}
}
