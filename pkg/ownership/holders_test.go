package ownership

import (
	"context"
	"testing"
	"time"
)

// TestHolders: the lease bucket's view, read by Holders, names the holder
// and the holder's own token, before and after a renewal, and forgets a
// released lease.
func TestHolders(t *testing.T) {
	s := startNATS(t)
	_, js := connect(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if h, err := Holders(ctx, js, "holderstest"); err != nil || len(h) != 0 {
		t.Fatalf("before any replica: %v, %v; want no lease", h, err)
	}
	m, err := New(ctx, Config{JetStream: js, Service: "holderstest", ReplicaID: "r1", LeaseTTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.TryAcquire(ctx, "42")
	if err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		h, err := Holders(ctx, js, "holderstest")
		if err != nil {
			t.Fatal(err)
		}
		if got := h["42"]; got != (Holder{Owner: "r1", Token: l.Token()}) || len(h) != 1 {
			t.Fatalf("%s: holders %v, want 42 → r1 with token %d", when, h, l.Token())
		}
	}
	check("after the create")
	time.Sleep(2 * time.Second) // past one renewal interval (TTL/3)
	check("after a renewal")
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if h, err := Holders(ctx, js, "holderstest"); err != nil || len(h) != 0 {
		t.Fatalf("after release: %v, %v; want no lease", h, err)
	}
}
