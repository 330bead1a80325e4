package relay

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

func TestBackoff(t *testing.T) {
	var b backoff
	nominal := backoffMin
	for i := range 20 {
		d := b.delay()
		if d < nominal/2 || d > nominal {
			t.Fatalf("delay %d = %v, want within [%v, %v]", i, d, nominal/2, nominal)
		}
		nominal = min(nominal*backoffFactor, backoffMax)
	}
	b.reset()
	if d := b.delay(); d > backoffMin {
		t.Fatalf("delay after reset = %v", d)
	}
}

func TestValidPublishSubject(t *testing.T) {
	for s, want := range map[string]bool{
		"mailbus.events.a.message.created": true,
		"a":                                true,
		"":                                 false,
		"a..b":                             false,
		"a.":                               false,
		".a":                               false,
		"a.*.b":                            false,
		"a.>":                              false,
		"a b.c":                            false,
		"a.b\n":                            false,
	} {
		if got := validPublishSubject(s); got != want {
			t.Errorf("validPublishSubject(%q) = %v, want %v", s, got, want)
		}
	}
}

// nopJetStream satisfies the interface for config tests; it is never used.
type nopJetStream struct{ jetstream.JetStream }

func TestNewConfig(t *testing.T) {
	o := newFakeOutbox()
	if _, err := New(Config{JetStream: nopJetStream{}}); err == nil {
		t.Error("New without Outbox succeeded")
	}
	if _, err := New(Config{Outbox: o}); err == nil {
		t.Error("New without JetStream succeeded")
	}
	if _, err := New(Config{Outbox: o, JetStream: nopJetStream{}, BatchSize: -1}); err == nil {
		t.Error("New with a negative BatchSize succeeded")
	}
	r, err := New(Config{Outbox: o, JetStream: nopJetStream{}})
	if err != nil {
		t.Fatal(err)
	}
	if r.batchSize != DefaultBatchSize || r.pollInterval != DefaultPollInterval || r.ackTimeout != DefaultAckTimeout ||
		r.stream.Name != "MAILBUS_EVENTS" || r.stream.Subjects[0] != "mailbus.events.>" {
		t.Errorf("defaults: %d %v %v %q %q", r.batchSize, r.pollInterval, r.ackTimeout, r.stream.Name, r.stream.Subjects)
	}
	// Kick never blocks, however often it is called.
	for range 10 {
		r.Kick()
	}

	reg := prometheus.NewRegistry()
	if _, err := New(Config{Outbox: o, JetStream: nopJetStream{}, Metrics: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Outbox: o, JetStream: nopJetStream{}, Metrics: reg}); err == nil {
		t.Error("registering the metrics twice on one registry succeeded")
	}
}

// TestPublishOnceEmpty: an empty outbox is a pass that publishes nothing and
// touches no NATS at all.
func TestPublishOnceEmpty(t *testing.T) {
	r, reg := newTestRelay(t, Config{Outbox: newFakeOutbox(), JetStream: nopJetStream{}})
	n, err := r.publishOnce(context.Background())
	if n != 0 || err != nil {
		t.Fatalf("publishOnce = %d, %v", n, err)
	}
	if got := counter(t, reg, "mailbus_relay_outbox_lag"); got != 0 {
		t.Errorf("outbox_lag = %v", got)
	}
}
