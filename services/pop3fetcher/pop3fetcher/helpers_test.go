package pop3fetcher_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
	"github.com/mailbus/mailbus/services/store/store"
	"github.com/mailbus/mailbus/services/store/storetest"
)

// Bounds on waiting for something that must happen. They only limit how
// long a broken build takes to fail; no test asserts on elapsed time.
const (
	waitLong = 60 * time.Second
	rpcLong  = 30 * time.Second
)

// env is a running store (SQLite in a temporary directory, an embedded
// NATS server with JetStream) and clients of it. Every test starts its own.
type env struct {
	addr      string
	storeReg  *prometheus.Registry
	conn      *grpc.ClientConn
	accounts  mailbusv1.AccountServiceClient
	mailboxes mailbusv1.MailboxServiceClient
	ingest    mailbusv1.IngestServiceClient
	js        jetstream.JetStream
	natsURL   string
	// logs collects everything logged by the store and the fetchers, to
	// check that no secret is ever logged.
	logs *syncBuffer
	// serviceToken is the store's service API token; conn sends it.
	serviceToken string
	// dataDir is the store's data directory (its SQLite database).
	dataDir string
	// runStore runs the store on lis until the returned function is
	// called (or the test ends); stopStore stops the running one.
	runStore  func(lis net.Listener, reg *prometheus.Registry) func()
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
	e.storeReg = prometheus.NewRegistry()
	e.stopStore = e.runStore(lis, e.storeReg)
}

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

// testLogger logs to the test's output and to buf, at debug level.
func testLogger(t testing.TB, buf io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), buf), &slog.HandlerOptions{Level: slog.LevelDebug}))
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

// dial connects to the store with an API token until the test ends.
func (e *env) dial(t testing.TB, token string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	opts = append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(128 << 20)), apitoken.DialOption(token)}, opts...)
	conn, err := grpc.NewClient(e.addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// startStore runs a store until the test ends.
func startStore(t testing.TB) *env {
	t.Helper()
	e := &env{storeReg: prometheus.NewRegistry(), logs: &syncBuffer{}, dataDir: filepath.Join(t.TempDir(), "data")}
	natsURL := startNATS(t)
	e.natsURL = natsURL
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if e.serviceToken, _, err = apitoken.Generate(); err != nil {
		t.Fatal(err)
	}
	adminTokenFile := filepath.Join(t.TempDir(), "admin.token")
	e.runStore = func(lis net.Listener, reg *prometheus.Registry) func() {
		addr, stop := storetest.Run(t, store.Config{
			AdminTokenFile: adminTokenFile, ServiceToken: e.serviceToken,
			Listener: lis, MetricsListen: "-", NATSURL: natsURL, DataDir: e.dataDir, SecretKey: key,
			Logger: slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelInfo})), Registry: reg,
			WatchPollInterval: 50 * time.Millisecond,
		})
		e.addr = addr
		return stop
	}
	e.stopStore = e.runStore(lis, e.storeReg)
	// e.conn is the fetcher's connection, with the service token; the
	// test manages accounts and reads mail as an admin.
	adminToken, err := apitoken.ReadFile(adminTokenFile)
	if err != nil {
		t.Fatal(err)
	}
	e.conn = e.dial(t, e.serviceToken)
	admin := e.dial(t, adminToken)
	e.accounts = mailbusv1.NewAccountServiceClient(admin)
	e.mailboxes = mailbusv1.NewMailboxServiceClient(admin)
	e.ingest = mailbusv1.NewIngestServiceClient(e.conn)
	nc, err := nats.Connect(natsURL, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if e.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return e
}

func callCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), rpcLong)
	t.Cleanup(cancel)
	return ctx
}

// fetcherOpts adjusts a test fetcher's Config.
type fetcherOpts func(*pop3fetcher.Config)

// newFetcher makes a fetcher on the store with test settings: a fresh
// registry, no metrics listener, short retries and no jitter.
func (e *env) newFetcher(t testing.TB, opts ...fetcherOpts) (*pop3fetcher.Fetcher, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := pop3fetcher.Config{
		Conn: e.conn, Listener: lis, MetricsListen: "-", Registry: reg, Logger: testLogger(t, e.logs),
		Timeout: 10 * time.Second, Refresh: 50 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 100 * time.Millisecond,
		Jitter: func(d time.Duration) time.Duration { return d },
	}
	for _, o := range opts {
		o(&cfg)
	}
	f, err := pop3fetcher.New(cfg)
	if err != nil {
		lis.Close()
		t.Fatalf("pop3fetcher.New: %v", err)
	}
	t.Cleanup(func() { lis.Close() })
	return f, reg
}

// runFetcher runs f until the test ends (or stop is called) and fails the
// test if Run fails or does not return.
func runFetcher(t testing.TB, f *pop3fetcher.Fetcher) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("fetcher Run: %v", err)
				}
			case <-time.After(waitLong):
				t.Errorf("fetcher Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// account describes a POP3 account for the tests.
type account struct {
	name, host string
	port       int
	security   mailbusv1.Security
	skipVerify bool
	user       string
	secret     string
	mode       mailbusv1.Pop3Mode
	auth       mailbusv1.AuthMethod
	interval   time.Duration
	// oauth, when set, gives the account OAuth 2.0 credentials of this
	// server (a new grant) instead of a secret.
	oauth *oauthtest.Server
	// oauth2, when set, are the account's OAuth 2.0 credentials as given
	// (a grant of another authorization server).
	oauth2 *mailbusv1.Oauth2Credentials
}

func (e *env) createAccount(t testing.TB, a account) *mailbusv1.Account {
	t.Helper()
	if a.name == "" {
		a.name = "test"
	}
	if a.security == mailbusv1.Security_SECURITY_UNSPECIFIED {
		a.security = mailbusv1.Security_SECURITY_NONE
	}
	if a.interval == 0 {
		a.interval = time.Second
	}
	acct := &mailbusv1.Account{
		Name: a.name, Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: a.host, Port: uint32(a.port),
		Security: a.security, InsecureSkipVerify: a.skipVerify, Username: a.user, Secret: a.secret,
		Pop3Mode: a.mode, AuthMethod: a.auth, PollInterval: durationpb.New(a.interval),
	}
	if a.oauth != nil {
		acct.Secret, acct.AuthMethod = "", mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2
		acct.Oauth2 = &mailbusv1.Oauth2Credentials{Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC, TokenUrl: a.oauth.URL,
			ClientId: a.oauth.ClientID, ClientSecret: a.oauth.ClientSecret, RefreshToken: a.oauth.Grant()}
	}
	if a.oauth2 != nil {
		acct.Secret, acct.AuthMethod, acct.Oauth2 = "", mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, a.oauth2
	}
	resp, err := e.accounts.CreateAccount(callCtx(t), &mailbusv1.CreateAccountRequest{Account: acct})
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return resp.Account
}

// getAccount reads an account back (with its status and generation).
func (e *env) getAccount(t testing.TB, id string) *mailbusv1.Account {
	t.Helper()
	resp, err := e.accounts.GetAccount(callCtx(t), &mailbusv1.GetAccountRequest{AccountId: id})
	if err != nil {
		t.Fatalf("GetAccount: %v", err)
	}
	return resp.Account
}

// updateSecret changes an account's secret (which also un-parks it).
func (e *env) updateSecret(t testing.TB, id, secret string) *mailbusv1.Account {
	t.Helper()
	resp, err := e.accounts.UpdateAccount(callCtx(t), &mailbusv1.UpdateAccountRequest{
		Account:    &mailbusv1.Account{Id: id, Secret: secret},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
	})
	if err != nil {
		t.Fatalf("UpdateAccount: %v", err)
	}
	return resp.Account
}

// storedMessage is a message of the store, as ListUpstreamIds tells it.
type storedMessage struct {
	id, uidl, hash string
}

// stored returns the account's messages in the store.
func (e *env) stored(t testing.TB, accountID string) []storedMessage {
	t.Helper()
	stream, err := e.ingest.ListUpstreamIds(callCtx(t), &mailbusv1.ListUpstreamIdsRequest{AccountId: accountID})
	if err != nil {
		t.Fatalf("ListUpstreamIds: %v", err)
	}
	var out []storedMessage
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("ListUpstreamIds: %v", err)
		}
		for _, m := range resp.Messages {
			out = append(out, storedMessage{id: m.MessageId, uidl: m.GetUpstream().GetUidl(), hash: m.ContentHash})
		}
	}
}

// rawHash reads a message with GetRawMessage and returns the SHA-256 of
// its bytes, and their number.
func (e *env) rawHash(t testing.TB, messageID string) (string, int) {
	t.Helper()
	stream, err := e.mailboxes.GetRawMessage(callCtx(t), &mailbusv1.GetRawMessageRequest{MessageId: messageID})
	if err != nil {
		t.Fatalf("GetRawMessage: %v", err)
	}
	h := sha256.New()
	n := 0
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), n
		}
		if err != nil {
			t.Fatalf("GetRawMessage %s: %v", messageID, err)
		}
		h.Write(resp.Data)
		n += len(resp.Data)
	}
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// checkStoredExactly checks that the store holds exactly the messages
// whose wire forms are want (as a multiset), each once, byte for byte:
// the count, the content hash the store computed, and the SHA-256 of what
// GetRawMessage returns.
func (e *env) checkStoredExactly(t testing.TB, accountID string, want [][]byte) []storedMessage {
	t.Helper()
	got := e.stored(t, accountID)
	if len(got) != len(want) {
		t.Errorf("store holds %d messages, want %d", len(got), len(want))
	}
	wantCount := map[string]int{}
	for _, w := range want {
		wantCount[sha(w)]++
	}
	gotCount := map[string]int{}
	uidls := map[string]bool{}
	for _, m := range got {
		if uidls[m.uidl] {
			t.Errorf("uidl %q stored twice", m.uidl)
		}
		uidls[m.uidl] = true
		raw, _ := e.rawHash(t, m.id)
		if raw != m.hash {
			t.Errorf("message %s: GetRawMessage hashes to %s, the store says %s", m.id, raw, m.hash)
		}
		gotCount[raw]++
	}
	for h, n := range wantCount {
		if gotCount[h] != n {
			t.Errorf("message with sha256 %s: stored %d times, want %d", h[:12], gotCount[h], n)
		}
	}
	for h, n := range gotCount {
		if wantCount[h] == 0 {
			t.Errorf("unexpected message stored %d times, sha256 %s", n, h[:12])
		}
	}
	return got
}

// waitFor polls cond until it holds; it fails the test after waitLong.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", waitLong, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitStatus waits until the account's status is in state and returns it.
func (e *env) waitStatus(t testing.TB, id string, state mailbusv1.SyncState) *mailbusv1.AccountStatus {
	t.Helper()
	var st *mailbusv1.AccountStatus
	waitFor(t, "account status "+state.String(), func() bool {
		st = e.getAccount(t, id).GetStatus()
		return st.GetState() == state
	})
	return st
}

// metric returns the sum of a counter's or gauge's values whose labels
// include the given name=value pairs.
func metric(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			switch {
			case m.GetCounter() != nil:
				v += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				v += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				v += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return v
}

// createdEvents waits until the store has published every event, then
// counts the message.created events of an account on JetStream by message
// id.
func (e *env) createdEvents(t testing.TB, accountID string) map[string]int {
	t.Helper()
	waitFor(t, "the outbox to drain", func() bool { return metric(t, e.storeReg, "mailbus_store_outbox_backlog") == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	filter := fmt.Sprintf("%s.%s.message.created", events.SubjectPrefix, accountID)
	s, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	var want uint64
	for _, n := range info.State.Subjects {
		want += n
	}
	out := map[string]int{}
	if want == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	var got uint64
	for got < want {
		batch, err := c.Fetch(int(min(want-got, 500)), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			got++
			ev, err := events.Unmarshal(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			out[ev.GetMessageCreated().GetMessage().GetId()]++
		}
		if n == 0 {
			t.Fatalf("stream ended after %d of %d events", got, want)
		}
	}
	return out
}

// checkOneEventEach checks that every stored message had exactly one
// message.created event, and that there were no others.
func (e *env) checkOneEventEach(t testing.TB, accountID string, stored []storedMessage) {
	t.Helper()
	evs := e.createdEvents(t, accountID)
	for _, m := range stored {
		if evs[m.id] != 1 {
			t.Errorf("message %s (%s): %d message.created events, want 1", m.id, m.uidl, evs[m.id])
		}
	}
	if len(evs) != len(stored) {
		t.Errorf("%d messages had message.created events, %d are stored", len(evs), len(stored))
	}
}

// checkNoSecretLogged fails the test if a secret appears in the logs.
func (e *env) checkNoSecretLogged(t testing.TB, secrets ...string) {
	t.Helper()
	logs := e.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("the logs contain the secret %q", s)
		}
	}
}

// message makes a small distinct CRLF message.
func message(n int) []byte {
	return fmt.Appendf(nil, "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: message %d\r\nMessage-ID: <m%d@example.com>\r\nDate: Mon, 05 Jan 2026 15:04:05 +0000\r\n\r\nHello number %d.\r\n", n, n, n)
}
