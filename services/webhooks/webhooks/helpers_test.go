package webhooks

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/webhooksig"
)

// testKey seals the signing secrets in tests.
var testKey = []byte("0123456789abcdef0123456789abcdef")

// waitFor bounds every wait of the tests; a test that needs it has failed.
const waitFor = 60 * time.Second

// natsServer is an embedded nats-server with JetStream that a test can
// restart on the same port and store directory.
type natsServer struct {
	t    testing.TB
	opts *server.Options
	mu   sync.Mutex
	srv  *server.Server
}

func startNATS(t testing.TB) *natsServer {
	t.Helper()
	n := &natsServer{t: t, opts: &server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, Host: "127.0.0.1", NoLog: true, NoSigs: true}}
	n.start()
	n.opts.Port = n.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(n.shutdown)
	return n
}

func (n *natsServer) start() {
	n.t.Helper()
	srv, err := server.NewServer(n.opts)
	if err != nil {
		n.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats-server not ready")
	}
	n.mu.Lock()
	n.srv = srv
	n.mu.Unlock()
}

func (n *natsServer) shutdown() {
	n.mu.Lock()
	srv := n.srv
	n.mu.Unlock()
	srv.Shutdown()
	srv.WaitForShutdown()
}

// restart stops the server and starts it again on the same port and
// store directory.
func (n *natsServer) restart() {
	n.shutdown()
	n.start()
}

func (n *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.opts.Port) }

// jetStream connects a test client and makes MAILBUS_EVENTS.
func (n *natsServer) jetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(n.url(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, events.StreamConfig(1, 0, 0)); err != nil {
		t.Fatal(err)
	}
	return js
}

// publisher publishes message.created events with increasing states per
// account, as the store's relay does.
type publisher struct {
	js    jetstream.JetStream
	mu    sync.Mutex
	state map[string]uint64
	n     int
}

func newPublisher(js jetstream.JetStream) *publisher {
	return &publisher{js: js, state: map[string]uint64{}}
}

// publish publishes one event of account and returns its id.
func (p *publisher) publish(t testing.TB, account string) string {
	t.Helper()
	p.mu.Lock()
	p.state[account]++
	p.n++
	ev := &mailbusv1.Event{
		Id: fmt.Sprintf("ev-%s-%d", account, p.state[account]), AccountId: account, State: p.state[account], Time: timestamppb.Now(),
		Payload: &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{Message: &mailbusv1.MessageSummary{Id: fmt.Sprintf("m%d", p.n), AccountId: account}}},
	}
	p.mu.Unlock()
	b, err := events.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	subject, err := events.Subject(ev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for {
		_, err = p.js.Publish(ctx, subject, b, jetstream.WithMsgID(ev.Id))
		if err == nil || ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // NATS restarting
	}
	if err != nil {
		t.Fatal(err)
	}
	return ev.Id
}

// received is one request the receiver accepted or refused.
type received struct {
	eventID, kind, account string
	state                  uint64
	status                 int
	payload                *mailbusv1.WebhookPayload
}

// receiver is an HTTP endpoint that checks each request's signature with
// its secret and answers what answer says (200 when nil).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret []byte
	answer func(eventID string, attempt int) int

	mu       sync.Mutex
	attempts map[string]int
	log      []received // every request, in arrival order
	badSigs  int
	changed  chan struct{}
}

func newReceiver(t *testing.T, secret string, answer func(eventID string, attempt int) int) *receiver {
	r := &receiver{t: t, secret: []byte(secret), answer: answer, attempts: map[string]int{}, changed: make(chan struct{}, 1)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/hook" }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := webhooksig.Verify(req.Header.Get(webhooksig.Header), body, r.secret, time.Now(), 0); err != nil {
		r.mu.Lock()
		r.badSigs++
		r.mu.Unlock()
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var p mailbusv1.WebhookPayload
	if err := protojson.Unmarshal(body, &p); err != nil || req.Header.Get("Content-Type") != "application/json" ||
		req.Header.Get(HeaderEventID) != p.GetEvent().GetId() || req.Header.Get(HeaderEventKind) != p.GetKind() {
		r.t.Errorf("request: payload %v, headers %v", err, req.Header)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	id := p.GetEvent().GetId()
	r.mu.Lock()
	r.attempts[id]++
	n := r.attempts[id]
	r.mu.Unlock()
	status := http.StatusOK
	if r.answer != nil {
		status = r.answer(id, n)
	}
	w.WriteHeader(status)
	r.mu.Lock()
	r.log = append(r.log, received{eventID: id, kind: p.GetKind(), account: p.GetEvent().GetAccountId(), state: p.GetEvent().GetState(), status: status, payload: &p})
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// accepted returns the events answered with a 2xx, in arrival order.
func (r *receiver) accepted() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []received
	for _, x := range r.log {
		if x.status >= 200 && x.status <= 299 {
			out = append(out, x)
		}
	}
	return out
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.log...)
}

// waitRequests waits until the receiver was sent n requests, whatever it
// answered.
func (r *receiver) waitRequests(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitFor)
	for len(r.requests()) < n {
		select {
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d of %d requests received", len(r.requests()), n)
		}
	}
}

// waitAccepted waits until n distinct events were accepted.
func (r *receiver) waitAccepted(t *testing.T, n int) {
	t.Helper()
	deadline := time.After(waitFor)
	for {
		seen := map[string]bool{}
		for _, x := range r.accepted() {
			seen[x.eventID] = true
		}
		if len(seen) >= n {
			return
		}
		select {
		case <-r.changed:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("%d of %d events accepted", len(seen), n)
		}
	}
}

// runningService is a Service running in the background.
type runningService struct {
	s    *Service
	stop func()
}

// startService runs a Service on n with short timings for tests.
func startService(t testing.TB, n *natsServer, mutate func(*Config)) *runningService {
	t.Helper()
	cfg := Config{
		NATSURL: n.url(), Listen: "-", MetricsListen: "-", SecretKey: testKey, AllowPrivate: true,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, RequestTimeout: 2 * time.Second,
		AckWait: 2 * time.Second, PinnedTTL: 2 * time.Second,
		NATSOptions: []nats.Option{nats.ReconnectWait(100 * time.Millisecond)},
		Logger:      testLogger(t),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	ready := make(chan struct{})
	cfg.Ready = func(string) { close(ready) }
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run: %v", err)
	case <-time.After(waitFor):
		t.Fatal("service not ready")
	}
	var once sync.Once
	r := &runningService{s: s, stop: func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}}
	t.Cleanup(r.stop)
	return r
}

func testLogger(testing.TB) *slog.Logger {
	if os.Getenv("MAILBUS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// createEndpoint creates an endpoint through the API with a known secret.
func createEndpoint(t *testing.T, s *Service, ep *mailbusv1.WebhookEndpoint) *mailbusv1.WebhookEndpoint {
	t.Helper()
	resp, err := s.Server().CreateEndpoint(callCtx(t), &mailbusv1.CreateEndpointRequest{Endpoint: ep})
	if err != nil {
		t.Fatalf("CreateEndpoint: %v", err)
	}
	return resp.Endpoint
}

// checkOrder fails unless, per account, the accepted events (duplicates
// of the one just before collapsed) are exactly states 1..want[account].
// It returns the number of collapsed duplicates.
func checkOrder(t *testing.T, got []received, want map[string]int) int {
	t.Helper()
	last := map[string]uint64{}
	dups := 0
	for _, x := range got {
		switch {
		case x.state == last[x.account]+1:
			last[x.account] = x.state
		case x.state == last[x.account] && x.state != 0:
			dups++ // sent again after a restart: the same event as just before
		default:
			t.Fatalf("account %s: event of state %d accepted after state %d", x.account, x.state, last[x.account])
		}
	}
	for a, n := range want {
		if last[a] != uint64(n) {
			t.Errorf("account %s: accepted up to state %d, want %d", a, last[a], n)
		}
	}
	return dups
}
