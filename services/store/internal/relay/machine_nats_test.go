package relay

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/mailbus/mailbus/pkg/events"
)

// machineNATS is the NATS server with JetStream that development and CI
// machines run.
const machineNATS = "nats://127.0.0.1:4222"

// TestMachineNATS runs the relay against the machine's NATS server, on a
// stream and subjects of this run's own, deleted at the end. Without that
// server the test is skipped, except in CI, where it must be there.
func TestMachineNATS(t *testing.T) {
	probe, err := nats.Connect(machineNATS, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s: %v", machineNATS, err)
		}
		t.Skipf("NATS at %s not reachable: %v", machineNATS, err)
	}
	probe.Close()

	js := connect(t, machineNATS)
	id := nuid.Next()
	cfg := events.StreamConfig(1, time.Hour, 0)
	cfg.Name = "MAILBUS_EVENTS_TEST_" + id
	prefix := "relaytest." + id
	cfg.Subjects = []string{prefix + ".>"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, cfg.Name); err != nil {
			t.Errorf("delete stream %s: %v", cfg.Name, err)
		}
	})

	o := newFakeOutbox()
	g := newEventGen(id, prefix, 10)
	r, reg := newTestRelay(t, Config{Outbox: o, JetStream: js, Stream: cfg, BatchSize: 100})
	o.add(g.next(t, 500)...)
	startRelay(t, r)
	for range 50 {
		o.add(g.next(t, 10)...)
		r.Kick()
	}
	waitFor(t, 30*time.Second, "outbox drained", func() bool { return o.unpublished() == 0 })
	checkStream(t, js, cfg.Name, g)

	// A failed MarkPublished: the batch is published again, and deduplicated.
	o.add(g.next(t, 50)...)
	o.mu.Lock()
	o.failMark = 1
	o.mu.Unlock()
	r.Kick()
	waitFor(t, 30*time.Second, "outbox drained after a failed mark", func() bool { return o.unpublished() == 0 })
	checkStream(t, js, cfg.Name, g)
	if got := counter(t, reg, "mailbus_relay_events_duplicate_total"); got != 50 {
		t.Errorf("events_duplicate_total = %v, want 50", got)
	}
}
