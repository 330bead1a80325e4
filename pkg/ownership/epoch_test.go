package ownership

import (
	"context"
	"errors"
	"testing"
)

// TestTokensGrowAcrossBucketGenerations: a lease bucket created anew (NATS
// replaced and its JetStream data lost: revisions start again at 1) gives
// tokens larger than every token of the bucket it replaces, because a
// token is the bucket's epoch (its creation time on the server) plus the
// revision. A replica that read the epoch of the old bucket notices the
// new one when it acquires, gives the lease back, and its next attempt
// uses the new epoch; a token of the old bucket is stale in the new one.
func TestTokensGrowAcrossBucketGenerations(t *testing.T) {
	s := startNATS(t)
	ctx := context.Background()
	newManager := func(id string) *Manager {
		_, js := connect(t, s)
		m, err := New(ctx, shortTTLs(Config{JetStream: js, Service: "testfetcher", ReplicaID: id}))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	a := newManager("a")
	// Some history in the first bucket, so that its revisions run ahead
	// of the new bucket's.
	var old *Lease
	for range 5 {
		l, err := a.TryAcquire(ctx, "acct-1")
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		old = l
	}
	if old.Token() <= old.Revision() {
		t.Fatalf("token %d is not above the revision %d: no epoch", old.Token(), old.Revision())
	}

	_, js := connect(t, s)
	if err := js.DeleteKeyValue(ctx, LeaseBucket("testfetcher")); err != nil {
		t.Fatal(err)
	}
	b := newManager("b") // creates the bucket anew
	lb, err := b.TryAcquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	if lb.Revision() >= old.Revision() {
		t.Fatalf("the new bucket's revision %d is not below the old one's %d: the test proves nothing", lb.Revision(), old.Revision())
	}
	if lb.Token() <= old.Token() {
		t.Fatalf("token %d in the new bucket is not above %d of the old one", lb.Token(), old.Token())
	}
	if err := CheckToken(ctx, js, "testfetcher", "acct-1", old.Token()); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("the old bucket's token: %v, want ErrStaleToken", err)
	}
	if err := CheckToken(ctx, js, "testfetcher", "acct-1", lb.Token()); err != nil {
		t.Fatalf("the new lease's token: %v", err)
	}

	// a still has the old bucket's epoch: its first acquire is given back.
	if _, err := a.TryAcquire(ctx, "acct-2"); err == nil || errors.Is(err, ErrHeld) {
		t.Fatalf("acquire with the old bucket's epoch: %v, want an error", err)
	}
	la, err := a.TryAcquire(ctx, "acct-2")
	if err != nil {
		t.Fatalf("acquire after the epoch was read again: %v", err)
	}
	if la.Token() <= old.Token() {
		t.Fatalf("token %d after the epoch was read again, not above %d", la.Token(), old.Token())
	}
	if err := CheckToken(ctx, js, "testfetcher", "acct-2", la.Token()); err != nil {
		t.Fatalf("a's new lease: %v", err)
	}
	if !la.Current(ctx) || !lb.Current(ctx) {
		t.Fatal("current leases not reported current")
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if lb.Current(ctx) {
		t.Fatal("a released lease reported current")
	}
	la.Release(ctx)
}
