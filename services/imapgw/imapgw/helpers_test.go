package imapgw

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"log/slog"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/store"
	"github.com/mailbus/mailbus/services/store/storetest"
)

// waitFor bounds waits that only a bug makes long; no assertion is on time.
const waitFor = 30 * time.Second

var testKey = []byte("0123456789abcdef0123456789abcdef")

func testLogger() *slog.Logger {
	if os.Getenv("MAILBUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// env is a real store (SQLite, embedded NATS with JetStream) with an
// admin connection.
type env struct {
	t     testing.TB
	addr  string
	admin *grpc.ClientConn
	// plain is a connection without a token, as the gateway uses.
	plain *grpc.ClientConn
	// rawReads counts the GetRawMessage calls on plain: the messages the
	// gateway read.
	rawReads atomic.Int64
	// failLists makes ListMessages on plain fail (Unavailable).
	failLists atomic.Bool
	// adminToken and serviceToken are the store's admin and service
	// tokens.
	adminToken, serviceToken string
}

func startEnv(t testing.TB) *env {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, Host: "127.0.0.1", NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(waitFor) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serviceToken, _, err := apitoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	adminFile := filepath.Join(t.TempDir(), "admin.token")
	e := &env{t: t}
	e.addr, _ = storetest.Run(t, store.Config{
		AdminTokenFile: adminFile, ServiceToken: serviceToken, Listener: lis, MetricsListen: "-",
		NATSURL: ns.ClientURL(), DataDir: filepath.Join(t.TempDir(), "data"), SecretKey: testKey,
		Logger: testLogger(), Registry: prometheus.NewRegistry(),
	})
	admin, err := apitoken.ReadFile(adminFile)
	if err != nil {
		t.Fatal(err)
	}
	e.admin = e.dial(admin)
	e.adminToken, e.serviceToken = admin, serviceToken
	e.plain = e.dial("", grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if method == mailbusv1.MailboxService_GetRawMessage_FullMethodName {
			e.rawReads.Add(1)
		}
		return streamer(ctx, desc, cc, method, opts...)
	}), grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == mailbusv1.MailboxService_ListMessages_FullMethodName && e.failLists.Load() {
			return status.Error(codes.Unavailable, "listing switched off by the test")
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}))
	return e
}

func (e *env) dial(token string, extra ...grpc.DialOption) *grpc.ClientConn {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, extra...)
	if token != "" {
		opts = append(opts, apitoken.DialOption(token))
	}
	conn, err := grpc.NewClient(e.addr, opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { conn.Close() })
	return conn
}

func (e *env) mailboxes() mailbusv1.MailboxServiceClient {
	return mailbusv1.NewMailboxServiceClient(e.admin)
}

// account creates an IMAP account (its upstream is never reached: no
// imapsync runs) and returns it with its inbox.
func (e *env) account(name, username string) (*mailbusv1.Account, *mailbusv1.Mailbox) {
	e.t.Helper()
	resp, err := mailbusv1.NewAccountServiceClient(e.admin).CreateAccount(callCtx(e.t), &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: name, Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "imap.example.com", Port: 993,
		Security: mailbusv1.Security_SECURITY_TLS, Username: username, Secret: "pw"}})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Account, e.mailbox(resp.Account.Id, "INBOX")
}

func (e *env) mailbox(accountID, name string) *mailbusv1.Mailbox {
	e.t.Helper()
	list, err := e.mailboxes().ListMailboxes(callCtx(e.t), &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, m := range list.Mailboxes {
		if m.Name == name {
			return m
		}
	}
	e.t.Fatalf("no mailbox %q", name)
	return nil
}

// token makes a device token of accounts; it returns the secret and id.
func (e *env) token(readOnly bool, accountIDs ...string) (string, string) {
	e.t.Helper()
	resp, err := mailbusv1.NewTokenServiceClient(e.admin).CreateToken(callCtx(e.t), &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: "mail client", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: accountIDs, ReadOnly: readOnly}})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Secret, resp.Token.Id
}

func (e *env) appendMsg(mailboxID, raw string, flags ...string) *mailbusv1.MessageSummary {
	e.t.Helper()
	resp, err := e.mailboxes().AppendMessage(callCtx(e.t), &mailbusv1.AppendMessageRequest{MailboxId: mailboxID, Raw: []byte(raw), Flags: flags, DeviceId: "test"})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp.Message
}

func (e *env) rawMsg(id string) []byte {
	e.t.Helper()
	stream, err := e.mailboxes().GetRawMessage(callCtx(e.t), &mailbusv1.GetRawMessageRequest{MessageId: id})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []byte
	for {
		c, err := stream.Recv()
		if err != nil {
			break
		}
		out = append(out, c.Data...)
	}
	return out
}

// gateway runs a gateway in front of the store until the test ends (or
// stop is called) and returns its address.
type gateway struct {
	addr string
	stop func()
	g    *Gateway
}

func (e *env) gateway(mod func(*Config)) *gateway {
	e.t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := Config{StoreConn: e.plain, Listener: lis, Logger: testLogger()}
	if mod != nil {
		mod(&cfg)
	}
	g, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("gateway: %v", err)
			}
			if n := g.Panics(); n != 0 {
				e.t.Errorf("the gateway recovered from %d panics (MAILBUS_TEST_LOG=1 shows them)", n)
			}
		}
	}
	e.t.Cleanup(stop)
	return &gateway{addr: lis.Addr().String(), stop: stop, g: g}
}

// client connects an IMAP client (go-imap v2) to the gateway.
func (gw *gateway) client(t testing.TB, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(gw.addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// login connects and logs in.
func (gw *gateway) login(t testing.TB, user, token string, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	c := gw.client(t, opts)
	if err := c.Login(user, token).Wait(); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

func testMail(subject string) string {
	return "From: Ann <ann@example.com>\r\nTo: bob@example.com\r\nSubject: " + subject + "\r\n" +
		"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <" + subject + "@example.com>\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n" +
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello Bob, " + subject + ".\r\n" +
		"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
}

// count is the number of messages in a mailbox.
func (e *env) count(mailboxID string) int {
	e.t.Helper()
	resp, err := e.mailboxes().ListMessages(callCtx(e.t), &mailbusv1.ListMessagesRequest{MailboxId: mailboxID, PageSize: 1000})
	if err != nil {
		e.t.Fatal(err)
	}
	return len(resp.Messages)
}
