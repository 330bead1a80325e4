package relay

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailbus/mailbus/pkg/events"
)

// runServer starts an embedded NATS server with JetStream on 127.0.0.1:port
// (-1: any free port) keeping its data in dir, and shuts it down when the
// test ends.
func runServer(t *testing.T, port int, dir string) *server.Server {
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

func serverPort(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }

// connect connects to url and reconnects forever, quickly, with jitter.
func connect(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url,
		nats.MaxReconnects(-1),
		nats.ReconnectWait(50*time.Millisecond),
		nats.ReconnectJitter(25*time.Millisecond, 25*time.Millisecond),
		nats.Timeout(2*time.Second),
	)
	if err != nil {
		t.Fatalf("nats connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// newTestRelay makes a relay with short timers for tests.
func newTestRelay(t *testing.T, cfg Config) (*Relay, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg.Metrics = reg
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = 2 * time.Second
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	return r, reg
}

// startRelay runs r until the test ends.
func startRelay(t *testing.T, r *Relay) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// counter reads a counter or gauge from reg.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// checkStream reads the whole stream with an ordered consumer and checks
// that it holds every event of g exactly once, on its subject, with its id
// as Nats-Msg-Id and the Content-Type and Mailbus-Event-Kind headers, in
// seq order (so in state order per account).
func checkStream(t *testing.T, js jetstream.JetStream, stream string, g *eventGen) {
	t.Helper()
	want := len(g.byID)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != uint64(want) {
		t.Errorf("stream holds %d messages, want %d", info.State.Msgs, want)
	}

	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	lastState := map[string]uint64{}
	var lastSeq int64
	got := 0
	for got < want {
		batch, err := c.Fetch(min(want-got, 500), jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			t.Fatalf("fetch: %v", err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			got++
			e, err := events.Unmarshal(m.Data())
			if err != nil {
				t.Fatalf("message %d: %v", got, err)
			}
			p, ok := g.byID[e.GetId()]
			if !ok {
				t.Fatalf("unknown event %q", e.GetId())
			}
			if seen[e.GetId()] {
				t.Errorf("event %s stored twice", e.GetId())
			}
			seen[e.GetId()] = true
			if id := m.Headers().Get(jetstream.MsgIDHeader); id != e.GetId() {
				t.Errorf("event %s: Nats-Msg-Id %q", e.GetId(), id)
			}
			if m.Subject() != p.Subject {
				t.Errorf("event %s: subject %q, want %q", e.GetId(), m.Subject(), p.Subject)
			}
			if ct, kind := m.Headers().Get(events.HeaderContentType), m.Headers().Get(events.HeaderKind); ct != events.ContentType || kind != events.Kind(e) {
				t.Errorf("event %s: headers %s %q, %s %q; want %q, %q", e.GetId(), events.HeaderContentType, ct, events.HeaderKind, kind, events.ContentType, events.Kind(e))
			}
			acct := e.GetAccountId()
			if e.GetState() <= lastState[acct] {
				t.Errorf("account %s: state %d after %d", acct, e.GetState(), lastState[acct])
			}
			lastState[acct] = e.GetState()
			if p.Seq <= lastSeq {
				t.Errorf("seq %d after seq %d", p.Seq, lastSeq)
			}
			lastSeq = p.Seq
		}
		if err := batch.Error(); err != nil {
			t.Fatalf("fetch: %v", err)
		}
		if n == 0 {
			t.Fatalf("stream ended after %d of %d events", got, want)
		}
		if t.Failed() {
			t.FailNow()
		}
	}
	if len(seen) != want {
		t.Errorf("received %d distinct events, want %d", len(seen), want)
	}
}
