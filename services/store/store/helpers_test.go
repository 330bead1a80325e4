package store_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/discover"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/inproc"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/pkg/serving"
	"github.com/mailbus/mailbus/services/store/internal/auth"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
	"github.com/mailbus/mailbus/services/store/store"
)

// TestMain runs the tests and benchmarks, then removes the databases the
// benchmarks built once per process (see changesFixtureFor).
func TestMain(m *testing.M) {
	code := m.Run()
	releaseFixtures()
	os.Exit(code)
}

// Bounds on waiting for something that must happen. They only limit how long
// a broken build takes to fail; no test asserts on elapsed time.
const (
	waitLong = 60 * time.Second
	rpcLong  = 30 * time.Second
)

// eachBackend runs f as a subtest per database backend (SQLite, and
// PostgreSQL on 127.0.0.1:5432, each test in a database of its own).
func eachBackend(t *testing.T, f func(t *testing.T, b dbtest.Backend)) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}

// runNATS starts an embedded NATS server with JetStream on 127.0.0.1:port
// (-1: any free port) keeping its data in dir. It is shut down when the test
// ends, or earlier by the test (Shutdown may be called twice).
func runNATS(t testing.TB, port int, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: dir, Port: port, Host: "127.0.0.1",
		NoLog: true, NoSigs: true,
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
	return s
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// a NATS server that must come back on the same port.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// connectJS connects the test's own client (the "consumer") to url.
func connectJS(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatalf("nats connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// storeOpts configures a store under test. The zero value starts a store
// with an embedded NATS server of its own and the default stream.
type storeOpts struct {
	// adminTokenFile is the admin token file; default a new one.
	adminTokenFile string
	// natsURL is the NATS server to use instead of an embedded one.
	natsURL string
	// noNATS runs the store without NATS (events stay in the outbox).
	noNATS bool
	// stream replaces the default stream config (events.StreamConfig).
	stream jetstream.StreamConfig
	// eventsReplicas and eventsMaxAge: store.Config.
	eventsReplicas int
	eventsMaxAge   time.Duration
	// logger replaces the test's logger (testLogger).
	logger *slog.Logger
	// metricsListen serves /metrics, /healthz and /readyz there; default
	// none.
	metricsListen string
	// readinessInterval: store.Config.ReadinessInterval.
	readinessInterval time.Duration
	// maxMessageSize, retention and pruneInterval: store.Config.
	maxMessageSize int64
	retention      time.Duration
	pruneInterval  time.Duration
	// keepalive: store.Config.Keepalive.
	keepalive time.Duration
	// corsOrigins: store.Config.CORSOrigins.
	corsOrigins []string
	// beforeStart sees the fresh database's config before the store opens
	// it.
	beforeStart func(t testing.TB, cfg db.Config)
	// dbConfig, when set, is the database to use instead of a fresh one of
	// the backend (benchmarks on a prepared database).
	dbConfig *db.Config
	// secretKey and oldSecretKeys, when set, replace a generated key.
	secretKey     []byte
	oldSecretKeys [][]byte
	// discover: store.Config.Discover (DiscoverSettings' lookups).
	discover discover.Config
	// inProcess serves the API on an in-process channel too
	// (store.Config.InProcess), and the env's clients use it (connect).
	inProcess bool
}

// env is a running store, a gRPC client of it, and the test's own JetStream
// client (nil without NATS).
type env struct {
	addr      string
	reg       *prometheus.Registry
	natsURL   string
	stream    string
	js        jetstream.JetStream
	conn      *grpc.ClientConn
	accounts  mailbusv1.AccountServiceClient
	mailboxes mailbusv1.MailboxServiceClient
	sync      mailbusv1.SyncServiceClient
	ingest    mailbusv1.IngestServiceClient
	health    healthpb.HealthClient
	// adminToken and serviceToken are the API tokens the clients use:
	// ingest sends the service token, the other clients the admin token.
	adminToken, serviceToken string
	adminTokenFile           string
	// stop stops the store and waits for Run to return (once; the test's
	// end does it too).
	stop func()
	// inProcess is the store's in-process channel (storeOpts.inProcess).
	inProcess *inproc.Channel
}

// startStore runs a store on a fresh database of backend b until the test
// ends; at the end it stops the store, waits for Run to return, and fails
// the test if a handler panicked or answered INTERNAL.
func startStore(t testing.TB, b dbtest.Backend, o storeOpts) *env {
	t.Helper()
	var dbCfg db.Config
	if o.dbConfig != nil {
		dbCfg = *o.dbConfig
	} else {
		dbCfg = b.Config(t)
	}
	if o.beforeStart != nil {
		o.beforeStart(t, dbCfg)
	}
	e := &env{reg: prometheus.NewRegistry(), stream: events.StreamName}
	if o.stream.Name != "" {
		e.stream = o.stream.Name
	}
	switch {
	case o.noNATS:
	case o.natsURL != "":
		e.natsURL = o.natsURL
	default:
		ns := runNATS(t, -1, t.TempDir())
		e.natsURL = ns.ClientURL()
	}
	key := o.secretKey
	if key == nil {
		var err error
		if key, err = secretbox.GenerateKey(); err != nil {
			t.Fatal(err)
		}
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serviceToken, _, _, err := auth.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	adminTokenFile := o.adminTokenFile
	if adminTokenFile == "" {
		adminTokenFile = filepath.Join(t.TempDir(), "admin.token")
	}
	e.adminTokenFile = adminTokenFile
	ready := make(chan string, 1)
	if o.inProcess {
		e.inProcess = inproc.New()
	}
	logger := o.logger
	if logger == nil {
		logger = testLogger(t)
	}
	s, err := store.New(store.Config{
		AdminTokenFile:    adminTokenFile,
		ServiceToken:      serviceToken,
		Listener:          lis,
		MetricsListen:     cmp.Or(o.metricsListen, "-"),
		ReadinessInterval: o.readinessInterval,
		NATSURL:           e.natsURL,
		Stream:            o.stream,
		EventsReplicas:    o.eventsReplicas,
		EventsMaxAge:      o.eventsMaxAge,
		DataDir:           dbCfg.DataDir,
		DatabaseURL:       dbCfg.URL,
		SecretKey:         key,
		OldSecretKeys:     o.oldSecretKeys,
		MaxMessageSize:    o.maxMessageSize,
		Retention:         o.retention,
		PruneInterval:     o.pruneInterval,
		Keepalive:         o.keepalive,
		CORSOrigins:       o.corsOrigins,
		Discover:          o.discover,
		WatchPollInterval: 50 * time.Millisecond,
		Logger:            logger,
		Registry:          e.reg,
		InProcess:         e.inProcess,
		Ready:             func(addr string) { ready <- addr },
	})
	if err != nil {
		lis.Close()
		t.Fatalf("store.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("store Run: %v", err)
				}
			case <-time.After(waitLong):
				t.Errorf("store Run did not return %v after cancel", waitLong)
			}
		})
	}
	t.Cleanup(func() {
		e.stop()
		if n := serving.PanicsRecovered(e.reg); n != 0 {
			t.Errorf("%v panics recovered in gRPC handlers", n)
		}
		if n := requestsWithCode(t, e.reg, codes.Internal); n != 0 {
			t.Errorf("%v requests answered INTERNAL (see the log)", n)
		}
	})
	select {
	case e.addr = <-ready:
	case err := <-done:
		t.Fatalf("store stopped before serving: %v", err)
	case <-time.After(waitLong):
		t.Fatal("store not ready")
	}

	if e.adminToken, err = apitoken.ReadFile(adminTokenFile); err != nil {
		t.Fatal(err)
	}
	e.serviceToken = serviceToken
	conn := e.dial(t, e.adminToken)
	e.conn = conn
	e.accounts = mailbusv1.NewAccountServiceClient(conn)
	e.mailboxes = mailbusv1.NewMailboxServiceClient(conn)
	e.sync = mailbusv1.NewSyncServiceClient(conn)
	e.ingest = mailbusv1.NewIngestServiceClient(e.connect(t, serviceToken))
	e.health = healthpb.NewHealthClient(conn)
	if e.natsURL != "" {
		e.js = connectJS(t, e.natsURL)
	}
	return e
}

// dial connects to the store with an API token ("" for none); the
// connection closes when the test ends, before the store stops (cleanups
// run last first), so that open streams end first.
func (e *env) dial(t testing.TB, token string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(128<<20)), apitoken.DialOption(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// connect is a connection to the store with an API token ("" for none):
// on its in-process channel when it has one (storeOpts.inProcess), else
// dialed as dial does.
func (e *env) connect(t testing.TB, token string) grpc.ClientConnInterface {
	if e.inProcess != nil {
		var creds credentials.PerRPCCredentials
		if token != "" {
			creds = apitoken.Credentials(token)
		}
		return e.inProcess.Conn(creds)
	}
	return e.dial(t, token)
}

// eachTransport runs f for a store's port (inProcess false) and for its
// in-process channel (true): what the store's interceptors decide must be
// the same on both.
func eachTransport(t *testing.T, f func(t *testing.T, inProcess bool)) {
	for _, c := range []struct {
		name      string
		inProcess bool
	}{{"port", false}, {"inproc", true}} {
		t.Run(c.name, func(t *testing.T) { f(t, c.inProcess) })
	}
}

// testLogger logs to the test's output: at info level for tests, only
// errors for benchmarks (whose output is shown even when they pass).
func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if _, ok := t.(*testing.B); ok {
		level = slog.LevelError
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: level}))
}

// callCtx returns a context for one call, bounded so that a hang fails the
// test instead of stalling it.
func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), rpcLong)
	t.Cleanup(cancel)
	return ctx
}

// metric returns the sum of a counter's or gauge's values in reg (0 when
// absent).
func metric(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				v += c.GetValue()
			} else {
				v += m.GetGauge().GetValue()
			}
		}
	}
	return v
}

// requestsWithCode counts the gRPC calls the store answered with code.
func requestsWithCode(t testing.TB, reg *prometheus.Registry, code codes.Code) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "mailbus_grpc_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == code.String() {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// waitFor polls cond until it holds; it fails the test after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// backlog is the store's outbox backlog: events committed, not yet
// acknowledged by JetStream.
func (e *env) backlog(t testing.TB) float64 {
	return metric(t, e.reg, "mailbus_store_outbox_backlog")
}

// waitPublished waits until every committed event has been acknowledged by
// JetStream (the outbox is empty). After it, the stream holds all of them and
// no more will come until the next change.
func (e *env) waitPublished(t testing.TB) {
	t.Helper()
	waitFor(t, waitLong, "the outbox to drain", func() bool { return e.backlog(t) == 0 })
}

// streamEvent is one message read back from the stream.
type streamEvent struct {
	ev      *mailbusv1.Event
	subject string
	msgID   string
	header  nats.Header
	seq     uint64
}

// readStream reads every message of the stream on filter (all of them, as
// the stream counts them when called) with an ordered consumer, and decodes
// each event.
func readStream(t testing.TB, js jetstream.JetStream, stream, filter string) []streamEvent {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatalf("stream %s info: %v", stream, err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	if want == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatalf("ordered consumer: %v", err)
	}
	var out []streamEvent
	for uint64(len(out)) < want {
		batch, err := c.Fetch(int(min(want-uint64(len(out)), 500)), jetstream.FetchMaxWait(10*time.Second))
		if errors.Is(err, nats.ErrNoResponders) && ctx.Err() == nil {
			// On a cluster a consumer just made may not be known yet
			// to the server this connection is on (seen in CI on the
			// 3-node cluster of TestOperatorOwnsTheStream): ask again.
			time.Sleep(100 * time.Millisecond)
			continue
		}
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := events.Unmarshal(m.Data())
			if err != nil {
				t.Fatalf("message on %s: %v", m.Subject(), err)
			}
			md, err := m.Metadata()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, streamEvent{ev: ev, subject: m.Subject(), msgID: m.Headers().Get(jetstream.MsgIDHeader), header: m.Headers(), seq: md.Sequence.Stream})
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if n == 0 {
			t.Fatalf("stream %s on %s ended after %d of %d messages", stream, filter, len(out), want)
		}
	}
	return out
}

// checkEnvelope checks what every event read from the stream must satisfy:
// its subject is events.Subject of it, its Nats-Msg-Id is its id, and its
// headers say its content type and kind (events.Header).
func checkEnvelope(t testing.TB, got []streamEvent) {
	t.Helper()
	for _, g := range got {
		want, err := events.Subject(g.ev)
		if err != nil {
			t.Errorf("event %s: %v", g.ev.GetId(), err)
			continue
		}
		if g.subject != want {
			t.Errorf("event %s (%s) on subject %q, want %q", g.ev.GetId(), events.Kind(g.ev), g.subject, want)
		}
		if g.msgID == "" || g.msgID != g.ev.GetId() {
			t.Errorf("event %s: Nats-Msg-Id %q", g.ev.GetId(), g.msgID)
		}
		if ct, kind := g.header.Get(events.HeaderContentType), g.header.Get(events.HeaderKind); ct != events.ContentType || kind != events.Kind(g.ev) {
			t.Errorf("event %s: headers %s %q, %s %q; want %q, %q", g.ev.GetId(), events.HeaderContentType, ct, events.HeaderKind, kind, events.ContentType, events.Kind(g.ev))
		}
	}
}

// Accounts and messages.

func pop3Account(name string) *mailbusv1.Account {
	return &mailbusv1.Account{
		Name: name, Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "pop.example.com", Port: 995,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "bob", Secret: "s3cret",
	}
}

func imapAccount(name string) *mailbusv1.Account {
	return &mailbusv1.Account{
		Name: name, Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "imap.example.com", Port: 993,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "alice", Secret: "hunter2",
	}
}

func (e *env) createAccount(t testing.TB, a *mailbusv1.Account) *mailbusv1.Account {
	t.Helper()
	resp, err := e.accounts.CreateAccount(callCtx(t), &mailbusv1.CreateAccountRequest{Account: a})
	if err != nil {
		t.Fatalf("CreateAccount %s: %v", a.GetName(), err)
	}
	return resp.Account
}

// inbox returns the account's INBOX.
func (e *env) inbox(t testing.TB, accountID string) *mailbusv1.Mailbox {
	t.Helper()
	resp, err := e.mailboxes.ListMailboxes(callCtx(t), &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		t.Fatalf("ListMailboxes: %v", err)
	}
	for _, mb := range resp.Mailboxes {
		if mb.Role == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX {
			return mb
		}
	}
	t.Fatalf("account %s has no INBOX: %v", accountID, resp.Mailboxes)
	return nil
}

func (e *env) listMessages(t testing.TB, mailboxID string) []*mailbusv1.MessageSummary {
	t.Helper()
	var out []*mailbusv1.MessageSummary
	tok := ""
	for {
		resp, err := e.mailboxes.ListMessages(callCtx(t), &mailbusv1.ListMessagesRequest{MailboxId: mailboxID, PageSize: 1000, PageToken: tok})
		if err != nil {
			t.Fatalf("ListMessages: %v", err)
		}
		out = append(out, resp.Messages...)
		if resp.NextPageToken == "" {
			return out
		}
		tok = resp.NextPageToken
	}
}

func (e *env) state(t testing.TB, accountID string) uint64 {
	t.Helper()
	resp, err := e.sync.GetState(callCtx(t), &mailbusv1.GetStateRequest{AccountId: accountID})
	if err != nil {
		t.Fatalf("GetState: %v", err)
	}
	return resp.State
}

// testMessage is a small valid RFC 5322 message, distinct per n.
func testMessage(n int) []byte {
	return fmt.Appendf(nil, "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: message %d\r\nMessage-ID: <m%d@example.com>\r\nDate: Mon, 05 Jan 2026 15:04:05 +0000\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello number %d.\r\n", n, n, n)
}

// item is one message for IngestMessages.
type item struct {
	meta *mailbusv1.IngestMeta
	raw  []byte
}

func pop3Item(accountID, uidl string, raw []byte) item {
	return item{meta: &mailbusv1.IngestMeta{AccountId: accountID, Ref: uidl, Upstream: &mailbusv1.UpstreamId{Uidl: uidl}, Size: uint64(len(raw))}, raw: raw}
}

func imapItem(accountID, mailboxID string, uidvalidity, uid uint32, raw []byte) item {
	return item{meta: &mailbusv1.IngestMeta{
		AccountId: accountID, Ref: fmt.Sprint(uid), Size: uint64(len(raw)),
		Upstream:     &mailbusv1.UpstreamId{MailboxId: mailboxID, Uidvalidity: uidvalidity, Uid: uid},
		InternalDate: timestamppb.New(time.Date(2026, 1, 1, 0, 0, int(uid), 0, time.UTC)),
	}, raw: raw}
}

// ingestChunk is the size of the data chunks the test fetcher sends.
const ingestChunk = 64 << 10

// sendItem sends one message on an IngestMessages stream: meta, data in
// chunks, end_of_message.
func sendItem(stream mailbusv1.IngestService_IngestMessagesClient, it item) error {
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{Meta: it.meta}); err != nil {
		return err
	}
	for off := 0; off < len(it.raw); off += ingestChunk {
		if err := stream.Send(&mailbusv1.IngestMessagesRequest{Data: it.raw[off:min(off+ingestChunk, len(it.raw))]}); err != nil {
			return err
		}
	}
	return stream.Send(&mailbusv1.IngestMessagesRequest{EndOfMessage: true})
}

// ingestStream ingests items over one IngestMessages stream, reading the
// answers while it sends, and returns the results in order and the stream's
// final status (nil when it ended with OK).
func (e *env) ingestStream(ctx context.Context, items []item) ([]*mailbusv1.IngestResult, error) {
	stream, err := e.ingest.IngestMessages(ctx)
	if err != nil {
		return nil, err
	}
	type answer struct {
		results []*mailbusv1.IngestResult
		err     error
	}
	done := make(chan answer, 1)
	go func() {
		var a answer
		for {
			resp, err := stream.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				a.err = err
				break
			}
			a.results = append(a.results, resp.Results...)
		}
		done <- a
	}()
	var sendErr error
	for _, it := range items {
		if sendErr = sendItem(stream, it); sendErr != nil {
			break
		}
	}
	if sendErr == nil {
		sendErr = stream.CloseSend()
	}
	a := <-done
	if a.err == nil && sendErr != nil && !errors.Is(sendErr, io.EOF) {
		a.err = sendErr
	}
	return a.results, a.err
}

// mustIngest ingests items and fails the test if the stream or any item
// fails.
func (e *env) mustIngest(t testing.TB, items ...item) []*mailbusv1.IngestResult {
	t.Helper()
	res, err := e.ingestStream(callCtx(t), items)
	if err != nil {
		t.Fatalf("IngestMessages: %v", err)
	}
	if len(res) != len(items) {
		t.Fatalf("IngestMessages: %d results for %d messages", len(res), len(items))
	}
	for i, r := range res {
		if r.Error != "" || r.MessageId == "" {
			t.Fatalf("IngestMessages: message %d (%s): %+v", i, items[i].meta.GetRef(), r)
		}
	}
	return res
}

// rawMessage reads a message's bytes with GetRawMessage.
func (e *env) rawMessage(t testing.TB, messageID string) []byte {
	t.Helper()
	stream, err := e.mailboxes.GetRawMessage(callCtx(t), &mailbusv1.GetRawMessageRequest{MessageId: messageID})
	if err != nil {
		t.Fatalf("GetRawMessage: %v", err)
	}
	var out []byte
	total := uint64(0)
	for first := true; ; first = false {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("GetRawMessage %s: %v", messageID, err)
		}
		if first {
			total = resp.TotalSize
		}
		out = append(out, resp.Data...)
	}
	if uint64(len(out)) != total {
		t.Errorf("GetRawMessage %s: %d bytes, total_size %d", messageID, len(out), total)
	}
	return out
}

// Errors.

// wantCode fails the test unless err is a gRPC status with code; with a
// field, the status must carry a BadRequest naming it.
func wantCode(t testing.TB, what string, err error, code codes.Code, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if err == nil || !ok {
		t.Errorf("%s: got %v, want %v", what, err, code)
		return
	}
	if st.Code() != code {
		t.Errorf("%s: got %v (%s), want %v", what, st.Code(), st.Message(), code)
		return
	}
	if field == "" {
		return
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				fields = append(fields, v.Field)
			}
		}
	}
	for _, f := range fields {
		if f == field {
			return
		}
	}
	t.Errorf("%s: %v %q names fields %v, want %q", what, st.Code(), st.Message(), fields, field)
}

// errorReason returns the ErrorInfo reason of a status error.
func errorReason(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			return ei.Reason
		}
	}
	return ""
}

// shorten shortens a message for logs.
func shorten(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
