package ingest_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/inproc"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/store"
	"github.com/mailbus/mailbus/services/store/storetest"
)

// waitLong only bounds how long a broken build takes to fail; no test
// asserts on elapsed time.
const waitLong = 60 * time.Second

// env is a running store (SQLite in a temporary directory, an embedded
// NATS server) that can be restarted on the same address and data.
type env struct {
	addr         string
	serviceToken string
	adminToken   string
	accounts     mailbusv1.AccountServiceClient
	mailboxes    mailbusv1.MailboxServiceClient
	run          func(lis net.Listener) (stop func())
	stop         func()
	// inProcess, when set, is the store's in-process channel, which the
	// fetcher's side of the test (connect) uses (decision 0045).
	inProcess *inproc.Channel
}

func startNATS(t testing.TB) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: t.TempDir(), Port: -1, Host: "127.0.0.1", NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s.ClientURL()
}

func startStore(t testing.TB) *env {
	t.Helper()
	return startStoreOn(t, false)
}

// startStoreOn is startStore; with inProcess the store also serves its
// in-process channel, as in mailbus serve, and connect uses it.
func startStoreOn(t testing.TB, inProcess bool) *env {
	t.Helper()
	natsURL := startNATS(t)
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{}
	if inProcess {
		e.inProcess = inproc.New()
	}
	if e.serviceToken, _, err = apitoken.Generate(); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	adminTokenFile := filepath.Join(t.TempDir(), "admin.token")
	e.run = func(lis net.Listener) func() {
		addr, stop := storetest.Run(t, store.Config{
			AdminTokenFile: adminTokenFile, ServiceToken: e.serviceToken,
			Listener: lis, MetricsListen: "-", NATSURL: natsURL, DataDir: dataDir, SecretKey: key,
			Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})), Registry: prometheus.NewRegistry(),
			InProcess: e.inProcess,
		})
		e.addr = addr
		return stop
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.stop = e.run(lis)
	if e.adminToken, err = apitoken.ReadFile(adminTokenFile); err != nil {
		t.Fatal(err)
	}
	admin := e.dial(t, e.adminToken)
	e.accounts = mailbusv1.NewAccountServiceClient(admin)
	e.mailboxes = mailbusv1.NewMailboxServiceClient(admin)
	return e
}

// restart stops the store and starts it again on the same address and
// data, as after a crash or an upgrade.
func (e *env) restart(t testing.TB) {
	t.Helper()
	e.stop()
	lis, err := net.Listen("tcp", e.addr)
	if err != nil {
		t.Fatalf("listen again on the store's address: %v", err)
	}
	e.stop = e.run(lis)
}

func (e *env) dial(t testing.TB, token string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(token)}, opts...)
	conn, err := grpc.NewClient(e.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// connect is the fetcher's connection to the store with token: the
// store's in-process channel when it has one, else dialed over TCP; si,
// when set, intercepts its streams.
func (e *env) connect(t testing.TB, token string, si grpc.StreamClientInterceptor) grpc.ClientConnInterface {
	t.Helper()
	if e.inProcess == nil {
		if si == nil {
			return e.dial(t, token)
		}
		return e.dial(t, token, grpc.WithStreamInterceptor(si))
	}
	cc := e.inProcess.Conn(apitoken.Credentials(token))
	if si == nil {
		return cc
	}
	return intercepted{Conn: cc, si: si}
}

// intercepted runs a stream interceptor on an in-process connection.
type intercepted struct {
	*inproc.Conn
	si grpc.StreamClientInterceptor
}

func (c intercepted) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return c.si(ctx, desc, nil, method, func(ctx context.Context, desc *grpc.StreamDesc, _ *grpc.ClientConn, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		return c.Conn.NewStream(ctx, desc, method, opts...)
	}, opts...)
}

// eachTransport runs f with the fetcher on a TCP connection to the store
// and on its in-process channel (mailbus serve, decision 0045).
func eachTransport(t *testing.T, f func(t *testing.T, inProcess bool)) {
	t.Run("tcp", func(t *testing.T) { f(t, false) })
	t.Run("inproc", func(t *testing.T) { f(t, true) })
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

// pop3Account creates a POP3 account (no fetcher runs: the test is the
// fetcher) and returns its id.
func (e *env) pop3Account(t testing.TB) string {
	t.Helper()
	resp, err := e.accounts.CreateAccount(callCtx(t), &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "test", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "pop.invalid", Port: 110,
		Security: mailbusv1.Security_SECURITY_NONE, Username: "u", Secret: "p", PollInterval: durationpb.New(time.Hour),
	}})
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return resp.Account.Id
}

// stored returns the raw bytes of every stored message of the account
// by UIDL, failing the test when a UIDL is stored twice, and the number
// of messages in the account's mailboxes.
func (e *env) stored(t testing.TB, ingestc mailbusv1.IngestServiceClient, accountID string) (map[string][]byte, int) {
	t.Helper()
	ids, err := ingestc.ListUpstreamIds(callCtx(t), &mailbusv1.ListUpstreamIdsRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for {
		resp, err := ids.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range resp.Messages {
			if m.MessageId == "" {
				continue // a tombstone
			}
			u := m.GetUpstream().GetUidl()
			if _, dup := out[u]; dup {
				t.Errorf("UIDL %s stored twice", u)
			}
			out[u] = e.raw(t, m.MessageId)
		}
	}
	mbs, err := e.mailboxes.ListMailboxes(callCtx(t), &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, mb := range mbs.Mailboxes {
		token := ""
		for {
			page, err := e.mailboxes.ListMessages(callCtx(t), &mailbusv1.ListMessagesRequest{MailboxId: mb.Id, PageSize: 1000, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			total += len(page.Messages)
			if token = page.NextPageToken; token == "" {
				break
			}
		}
	}
	return out, total
}

func (e *env) raw(t testing.TB, id string) []byte {
	t.Helper()
	s, err := e.mailboxes.GetRawMessage(callCtx(t), &mailbusv1.GetRawMessageRequest{MessageId: id})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	for {
		resp, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return b
		}
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, resp.Data...)
	}
}
