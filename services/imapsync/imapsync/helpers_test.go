package imapsync_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
	"github.com/mailbus/mailbus/services/store/store"
	"github.com/mailbus/mailbus/services/store/storetest"
)

// waitLong bounds waiting for something that must happen; no test asserts
// on elapsed time.
const waitLong = 60 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("IMAPSYNC_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// env is a store (SQLite in a temp dir) with an embedded NATS server, and
// clients of both.
type env struct {
	t         testing.TB
	addr      string
	natsURL   string
	conn      *grpc.ClientConn
	accounts  mailbusv1.AccountServiceClient
	mailboxes mailbusv1.MailboxServiceClient
	sync      mailbusv1.SyncServiceClient
	ingest    mailbusv1.IngestServiceClient
	js        jetstream.JetStream
	nc        *nats.Conn
	// adminToken and serviceToken are the store's API tokens; conn sends
	// the service token.
	adminToken, serviceToken string
	// dataDir is the store's data directory (its SQLite database).
	dataDir string
	// runStore runs the store on lis until the returned function is
	// called (or the test ends); stopStore stops the running one.
	runStore  func(lis net.Listener) func()
	stopStore func()
}

// restartStore stops the store and starts it again on the same address
// and data, as after a crash or an upgrade.
func (e *env) restartStore(t testing.TB) {
	t.Helper()
	e.stopStore()
	lis, err := net.Listen("tcp", e.addr)
	if err != nil {
		t.Fatalf("listen again on the store's address: %v", err)
	}
	e.stopStore = e.runStore(lis)
}

func startStore(t testing.TB) *env {
	t.Helper()
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, Host: "127.0.0.1", NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serviceToken, _, err := apitoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	adminTokenFile := filepath.Join(t.TempDir(), "admin.token")
	dataDir := filepath.Join(t.TempDir(), "data")
	e := &env{t: t, natsURL: ns.ClientURL(), dataDir: dataDir}
	e.runStore = func(lis net.Listener) func() {
		addr, stop := storetest.Run(t, store.Config{
			AdminTokenFile: adminTokenFile, ServiceToken: serviceToken,
			Listener: lis, MetricsListen: "-", NATSURL: ns.ClientURL(), DataDir: dataDir, SecretKey: key,
			WatchPollInterval: 50 * time.Millisecond, Logger: testLogger(t), Registry: prometheus.NewRegistry(),
		})
		e.addr = addr
		return stop
	}
	e.stopStore = e.runStore(lis)
	// e.conn is imapsync's connection, with the service token; the test
	// acts as an admin (accounts) and as devices (mailbox changes).
	e.serviceToken = serviceToken
	if e.adminToken, err = apitoken.ReadFile(adminTokenFile); err != nil {
		t.Fatal(err)
	}
	e.conn = dialStore(t, e.addr, serviceToken)
	admin := dialStore(t, e.addr, e.adminToken)
	e.accounts = mailbusv1.NewAccountServiceClient(admin)
	e.mailboxes = mailbusv1.NewMailboxServiceClient(admin)
	e.sync = mailbusv1.NewSyncServiceClient(admin)
	e.ingest = mailbusv1.NewIngestServiceClient(e.conn)
	e.nc, err = nats.Connect(e.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	e.js, err = jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// dialStore connects to the store with an API token until the test ends.
func dialStore(t testing.TB, addr, token string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20)), apitoken.DialOption(token)}, opts...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

// createAccount creates an IMAP account for addr.
func (e *env) createAccount(t testing.TB, addr string, sec mailbusv1.Security, user, pass string, mod func(*mailbusv1.Account)) *mailbusv1.Account {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	a := &mailbusv1.Account{Name: "acct-" + strconv.FormatInt(time.Now().UnixNano(), 36), Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: host, Port: uint32(p),
		Security: sec, Username: user, Secret: pass, PollInterval: durationpb.New(time.Second)}
	if mod != nil {
		mod(a)
	}
	resp, err := e.accounts.CreateAccount(ctxT(t), &mailbusv1.CreateAccountRequest{Account: a})
	if err != nil {
		t.Fatalf("create account: %v", err)
	}
	return resp.Account
}

// syncer is a running imapsync.
type syncer struct {
	stop func()
	cuts *cutter
	svc  *imapsync.Service
}

// startSync runs imapsync against the store until stop or the test's end.
func startSync(t testing.TB, e *env, mod func(*imapsync.Config)) *syncer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cuts := &cutter{}
	cfg := imapsync.Config{
		StoreConn: e.conn, Listener: lis, MetricsListen: "-", NATSURL: e.natsURL, Logger: testLogger(t),
		Timeout: 20 * time.Second, PollInterval: time.Second, WriteBackPoll: 500 * time.Millisecond,
		RetryMin: 50 * time.Millisecond, RetryMax: time.Second, AccountRefresh: 200 * time.Millisecond,
		WrapConn: cuts.wrap,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := imapsync.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("imapsync Run: %v", err)
				}
			case <-time.After(waitLong):
				t.Error("imapsync did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return &syncer{stop: stop, cuts: cuts, svc: s}
}

// cutter tracks upstream connections so that a test can cut them, and
// counts the bytes read from upstream.
type cutter struct {
	mu    sync.Mutex
	conns []net.Conn
	read  atomic.Int64
}

func (c *cutter) wrap(_ string, nc net.Conn) net.Conn {
	w := &countConn{Conn: nc, n: &c.read}
	c.mu.Lock()
	c.conns = append(c.conns, w)
	c.mu.Unlock()
	return w
}

// cutAll closes every upstream connection made so far.
func (c *cutter) cutAll() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, nc := range c.conns {
		nc.Close()
	}
	n := len(c.conns)
	c.conns = nil
	return n
}

type countConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// waitFor polls cond until it holds or waitLong passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memServer is an imapmemserver on 127.0.0.1:0 with one user.
type memServer struct {
	addr string
	user *imapmemserver.User
}

func startMem(t testing.TB, folders ...string) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "secret")
	for _, f := range append([]string{"INBOX"}, folders...) {
		if err := u.Create(f, nil); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       nopLogger{},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return &memServer{addr: lis.Addr().String(), user: u}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// client is a plain IMAP client: the third party.
func dialPlain(t testing.TB, addr, user, pass string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func appendMsg(t testing.TB, c *imapclient.Client, mailbox string, raw []byte, flags ...imap.Flag) imap.UID {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), &imap.AppendOptions{Flags: flags})
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := cmd.Wait()
	if err != nil {
		t.Fatal(err)
	}
	return d.UID
}

func testMessage(i int, folder string) []byte {
	return fmt.Appendf(nil, "From: sender%d@example.org\r\nTo: alice@example.org\r\nSubject: message %d in %s\r\nMessage-ID: <m%d.%s@example.org>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n\r\nBody of message %d.\r\n", i, i, folder, i, folder, i)
}

// storeMessage is a message as the store has it.
type storeMessage struct {
	id    string
	uid   uint32
	uv    uint32
	flags []string
	hash  string
}

// storeFolder lists the store's upstream view of a mailbox by name.
func (e *env) storeFolder(t testing.TB, accountID, name string) map[uint32]storeMessage {
	t.Helper()
	mb := e.mailboxID(t, accountID, name)
	if mb == "" {
		return nil
	}
	stream, err := e.ingest.ListUpstreamIds(ctxT(t), &mailbusv1.ListUpstreamIdsRequest{AccountId: accountID, MailboxId: mb})
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32]storeMessage{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range resp.Messages {
			out[m.Upstream.Uid] = storeMessage{id: m.MessageId, uid: m.Upstream.Uid, uv: m.Upstream.Uidvalidity, flags: m.Flags, hash: m.ContentHash}
		}
	}
}

func (e *env) mailboxID(t testing.TB, accountID, name string) string {
	t.Helper()
	resp, err := e.mailboxes.ListMailboxes(ctxT(t), &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resp.Mailboxes {
		if m.Name == name {
			return m.Id
		}
	}
	return ""
}

func (e *env) mailboxNames(t testing.TB, accountID string) []string {
	t.Helper()
	resp, err := e.mailboxes.ListMailboxes(ctxT(t), &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range resp.Mailboxes {
		out = append(out, m.Name)
	}
	sort.Strings(out)
	return out
}

func (e *env) account(t testing.TB, id string) *mailbusv1.Account {
	t.Helper()
	resp, err := e.accounts.GetAccount(ctxT(t), &mailbusv1.GetAccountRequest{AccountId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Account
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// serverFolder fetches UID, FLAGS and the body hash of every message of a
// folder with a plain client.
func serverFolder(t testing.TB, c *imapclient.Client, name string) map[uint32]storeMessage {
	t.Helper()
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", name, err)
	}
	out := map[uint32]storeMessage{}
	if sel.NumMessages == 0 {
		return out
	}
	body := &imap.FetchItemBodySection{Peek: true}
	msgs, err := c.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{body}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		var fl []string
		for _, f := range m.Flags {
			if f != `\Recent` {
				fl = append(fl, string(f))
			}
		}
		sort.Strings(fl)
		out[uint32(m.UID)] = storeMessage{uid: uint32(m.UID), uv: sel.UIDValidity, flags: fl, hash: sha(m.FindBodySection(body))}
	}
	return out
}

// sameView compares the server's and the store's view of a folder.
func sameView(server, stored map[uint32]storeMessage) error {
	if len(server) != len(stored) {
		return fmt.Errorf("server has %d messages, store %d", len(server), len(stored))
	}
	for uid, s := range server {
		m, ok := stored[uid]
		if !ok {
			return fmt.Errorf("uid %d not in store", uid)
		}
		if m.uv != s.uv || m.hash != s.hash {
			return fmt.Errorf("uid %d: store (uv %d, %s), server (uv %d, %s)", uid, m.uv, m.hash, s.uv, s.hash)
		}
		fl := append([]string(nil), m.flags...)
		sort.Strings(fl)
		if fmt.Sprint(fl) != fmt.Sprint(s.flags) {
			return fmt.Errorf("uid %d: store flags %v, server %v", uid, fl, s.flags)
		}
	}
	return nil
}

// consumer collects the account's events from JetStream.
type consumer struct {
	mu  sync.Mutex
	evs []*mailbusv1.Event
}

// consume collects the account's events published from now on.
func (e *env) consume(t testing.TB, accountID string) *consumer {
	t.Helper()
	return e.consumeFrom(t, accountID, jetstream.DeliverNewPolicy)
}

// consumeFrom collects the account's events from where policy says:
// jetstream.DeliverNewPolicy for those published from now on,
// jetstream.DeliverAllPolicy for every event from the start of the
// stream. An event that does not decode fails the test.
func (e *env) consumeFrom(t testing.TB, accountID string, policy jetstream.DeliverPolicy) *consumer {
	t.Helper()
	c := &consumer{}
	ctx := ctxT(t)
	var cons jetstream.Consumer
	waitFor(t, "the event stream", func() bool {
		var err error
		cons, err = e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AccountSubjects(accountID)}, DeliverPolicy: policy})
		return err == nil
	})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Unmarshal(m.Data())
		if err != nil {
			t.Errorf("event %s: %v", m.Subject(), err)
			return
		}
		c.mu.Lock()
		c.evs = append(c.evs, ev)
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return c
}

func (c *consumer) count(f func(*mailbusv1.Event) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, ev := range c.evs {
		if f(ev) {
			n++
		}
	}
	return n
}
