package relay

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
)

// TestPublishThousandEvents: 1,000 events over 10 accounts, some in the
// outbox before the relay starts and the rest committed (and kicked) while
// it runs, reach the stream exactly once and in order.
func TestPublishThousandEvents(t *testing.T) {
	s := runServer(t, -1, t.TempDir())
	js := connect(t, s.ClientURL())
	o := newFakeOutbox()
	g := newEventGen("e", "", 10)
	r, reg := newTestRelay(t, Config{Outbox: o, JetStream: js, PollInterval: time.Minute})

	o.add(g.next(t, 300)...)
	startRelay(t, r)
	for range 70 {
		o.add(g.next(t, 10)...)
		r.Kick()
		time.Sleep(time.Millisecond)
	}
	waitFor(t, 30*time.Second, "outbox drained", func() bool { return o.unpublished() == 0 })
	checkStream(t, js, events.StreamName, g)

	if got := counter(t, reg, "mailbus_relay_events_published_total"); got != 1000 {
		t.Errorf("events_published_total = %v, want 1000", got)
	}
	if got := counter(t, reg, "mailbus_relay_leader"); got != 1 {
		t.Errorf("leader = %v, want 1", got)
	}
}

// TestNATSDown: the server goes away while the relay publishes, 1,000
// events are committed while it is away, and a server on the same port and
// store directory comes back: every event is in the stream exactly once, in
// order.
func TestNATSDown(t *testing.T) {
	dir := t.TempDir()
	s1 := runServer(t, -1, dir)
	port := serverPort(s1)
	js := connect(t, s1.ClientURL())
	o := newFakeOutbox()
	g := newEventGen("e", "", 10)
	r, reg := newTestRelay(t, Config{Outbox: o, JetStream: js, BatchSize: 64, AckTimeout: time.Second})
	startRelay(t, r)

	o.add(g.next(t, 10)...)
	r.Kick()
	waitFor(t, 10*time.Second, "first events published", func() bool { return o.unpublished() == 0 })

	// Keep committing while the server shuts down, so that it goes away in
	// the middle of batches.
	adding := make(chan struct{})
	go func() {
		defer close(adding)
		for range 60 {
			o.add(g.next(t, 5)...)
			r.Kick()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	waitFor(t, 10*time.Second, "publishing under way", func() bool {
		return counter(t, reg, "mailbus_relay_events_published_total") >= 60
	})
	s1.Shutdown()
	s1.WaitForShutdown()
	<-adding

	for range 100 {
		o.add(g.next(t, 10)...)
		r.Kick()
	}
	time.Sleep(1500 * time.Millisecond) // let the relay fail and back off
	if o.unpublished() < 1000 {
		t.Fatalf("only %d events unpublished while NATS is down", o.unpublished())
	}

	runServer(t, port, dir)
	waitFor(t, 60*time.Second, "outbox drained after restart", func() bool { return o.unpublished() == 0 })
	checkStream(t, js, events.StreamName, g)
	if got := counter(t, reg, "mailbus_relay_publish_errors_total"); got == 0 {
		t.Error("publish_errors_total = 0 after an outage")
	}
}

// TestRepublishNotDoubled: MarkPublished fails once after JetStream stored
// the batch; the relay publishes the batch again and the stream drops every
// repeat as a duplicate.
func TestRepublishNotDoubled(t *testing.T) {
	s := runServer(t, -1, t.TempDir())
	js := connect(t, s.ClientURL())
	o := newFakeOutbox()
	g := newEventGen("e", "", 10)
	r, reg := newTestRelay(t, Config{Outbox: o, JetStream: js})
	ctx := context.Background()
	if err := r.ensureStream(ctx); err != nil {
		t.Fatal(err)
	}

	o.add(g.next(t, 100)...)
	o.failMark = 1
	n, err := r.publishOnce(ctx)
	if n != 0 || !errors.Is(err, errInjected) {
		t.Fatalf("publishOnce = %d, %v; want 0, injected failure", n, err)
	}
	n, err = r.publishOnce(ctx)
	if n != 100 || err != nil {
		t.Fatalf("publishOnce again = %d, %v; want 100, nil", n, err)
	}
	checkStream(t, js, events.StreamName, g)
	if got := counter(t, reg, "mailbus_relay_events_duplicate_total"); got != 100 {
		t.Errorf("events_duplicate_total = %v, want 100", got)
	}

	// The same through Run, with more events behind the failed batch.
	o.add(g.next(t, 50)...)
	o.mu.Lock()
	o.failMark = 1
	o.mu.Unlock()
	startRelay(t, r)
	waitFor(t, 10*time.Second, "outbox drained", func() bool { return o.unpublished() == 0 })
	checkStream(t, js, events.StreamName, g)
}

// TestRejectedEventKeepsOrder: JetStream rejects one event of a batch (too
// large for the stream) while it would accept the later ones. Only the
// prefix before it is stored, nothing after it, and once the cause is gone
// the rest follows in order.
func TestRejectedEventKeepsOrder(t *testing.T) {
	s := runServer(t, -1, t.TempDir())
	js := connect(t, s.ClientURL())
	o := newFakeOutbox()
	g := newEventGen("e", "", 3)
	cfg := events.StreamConfig(1, 0, 0)
	cfg.MaxMsgSize = 2048
	r, reg := newTestRelay(t, Config{Outbox: o, JetStream: js, Stream: cfg})
	ctx := context.Background()
	if err := r.ensureStream(ctx); err != nil {
		t.Fatal(err)
	}

	ps := g.next(t, 20)
	ps[5].Payload = append(ps[5].Payload, bigPadding(4096)...)
	g.byID[ps[5].EventID] = ps[5]
	o.add(ps...)

	n, err := r.publishOnce(ctx)
	if n != 5 || err == nil {
		t.Fatalf("publishOnce = %d, %v; want 5 and the rejection", n, err)
	}
	stream, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 5 {
		t.Fatalf("stream holds %d messages after the rejection, want 5 (later events must not overtake)", info.State.Msgs)
	}

	// Retrying changes nothing while the cause remains.
	if n, err := r.publishOnce(ctx); n != 0 || err == nil {
		t.Fatalf("retry = %d, %v; want 0 and the rejection", n, err)
	}

	// An operator raises the limit (EnsureStream keeps it); the rest follows.
	cfg = info.Config
	cfg.MaxMsgSize = 1 << 20
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := r.ensureStream(ctx); err != nil {
		t.Fatal(err)
	}
	if n, err := r.publishOnce(ctx); n != 15 || err != nil {
		t.Fatalf("publishOnce after the fix = %d, %v; want 15, nil", n, err)
	}
	checkStream(t, js, events.StreamName, g)
	if got := counter(t, reg, "mailbus_relay_events_published_total"); got != 20 {
		t.Errorf("events_published_total = %v, want 20", got)
	}
}

// bigPadding is a protobuf unknown field (number 1000, bytes) of about n
// bytes, so that the event still decodes.
func bigPadding(n int) []byte {
	// Tag: field 1000, wire type 2 = (1000<<3)|2 = 8002 = varint c2 3e.
	// Length n as a varint.
	b := []byte{0xc2, 0x3e}
	for v := uint64(n); ; {
		if v < 0x80 {
			b = append(b, byte(v))
			break
		}
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, make([]byte, n)...)
}

// TestLeadership: without leadership nothing is published; granted, the
// outbox drains; lost, publishing stops; granted again, it resumes.
func TestLeadership(t *testing.T) {
	s := runServer(t, -1, t.TempDir())
	js := connect(t, s.ClientURL())
	o := newFakeOutbox()
	g := newEventGen("e", "", 10)
	l := newFakeLeader()
	r, reg := newTestRelay(t, Config{Outbox: o, JetStream: js, Leader: l})
	startRelay(t, r)

	o.add(g.next(t, 50)...)
	r.Kick()
	time.Sleep(500 * time.Millisecond)
	if n := o.unpublished(); n != 50 {
		t.Fatalf("%d of 50 events published without leadership", 50-n)
	}
	ctx := context.Background()
	if _, err := js.Stream(ctx, events.StreamName); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("stream looked up without leadership: %v", err)
	}

	l.grant(t)
	waitFor(t, 10*time.Second, "outbox drained as leader", func() bool { return o.unpublished() == 0 })
	checkStream(t, js, events.StreamName, g)

	l.revoke()
	waitFor(t, 5*time.Second, "leader gauge 0", func() bool { return counter(t, reg, "mailbus_relay_leader") == 0 })
	o.add(g.next(t, 20)...)
	r.Kick()
	time.Sleep(500 * time.Millisecond)
	if n := o.unpublished(); n != 20 {
		t.Fatalf("%d of 20 events published after leadership was lost", 20-n)
	}

	l.grant(t)
	waitFor(t, 10*time.Second, "outbox drained as leader again", func() bool { return o.unpublished() == 0 })
	checkStream(t, js, events.StreamName, g)
}

// TestDropUnpublishable: an event without an id or with a wildcard subject
// is dropped (marked published without publishing); the others go on.
func TestDropUnpublishable(t *testing.T) {
	s := runServer(t, -1, t.TempDir())
	js := connect(t, s.ClientURL())
	o := newFakeOutbox()
	g := newEventGen("e", "", 2)
	r, reg := newTestRelay(t, Config{Outbox: o, JetStream: js})
	ctx := context.Background()
	if err := r.ensureStream(ctx); err != nil {
		t.Fatal(err)
	}
	ps := g.next(t, 6)
	ps[0].EventID = ""
	ps[3].Subject = "mailbus.events.*.message.created"
	for _, p := range []Pending{ps[0], ps[3]} {
		for id, q := range g.byID {
			if q.Seq == p.Seq {
				delete(g.byID, id)
			}
		}
	}
	o.add(ps...)
	total := 0
	for range 10 {
		n, err := r.publishOnce(ctx)
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != 6 || o.unpublished() != 0 {
		t.Fatalf("marked %d, %d left; want 6, 0", total, o.unpublished())
	}
	if got := counter(t, reg, "mailbus_relay_events_dropped_total"); got != 2 {
		t.Errorf("events_dropped_total = %v, want 2", got)
	}
	checkStream(t, js, events.StreamName, g)
}

// TestNATSRestartsUnderLoad: events are committed without pause while the
// server is restarted three times, so that connections drop in the middle
// of batches, with publishes on the old socket and in the reconnect buffer.
// Every event is in the stream once, in order.
func TestNATSRestartsUnderLoad(t *testing.T) {
	dir := t.TempDir()
	s := runServer(t, -1, dir)
	port := serverPort(s)
	js := connect(t, s.ClientURL())
	o := newFakeOutbox()
	g := newEventGen("e", "", 10)
	r, _ := newTestRelay(t, Config{Outbox: o, JetStream: js, BatchSize: 32, AckTimeout: time.Second})
	startRelay(t, r)

	stop := make(chan struct{})
	adding := make(chan struct{})
	go func() {
		defer close(adding)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			o.add(g.next(t, 5)...)
			r.Kick()
		}
	}()
	for range 3 {
		time.Sleep(300 * time.Millisecond)
		s.Shutdown()
		s.WaitForShutdown()
		time.Sleep(200 * time.Millisecond)
		s = runServer(t, port, dir)
	}
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-adding

	waitFor(t, 60*time.Second, "outbox drained", func() bool { return o.unpublished() == 0 })
	t.Logf("%d events", len(g.byID))
	checkStream(t, js, events.StreamName, g)
}
