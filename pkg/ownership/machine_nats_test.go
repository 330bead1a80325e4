package ownership

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// machineNATS is the NATS server the development and CI machines run
// (2.9 here: no per-key TTLs, which this package does not need). Without
// it the test skips, except in CI.
const machineNATS = "nats://127.0.0.1:4222"

// On the machine's NATS (an older server than the embedded one): leases
// expire by the bucket's MaxAge after their last renewal, a paused owner
// is cancelled before the takeover and fenced after it, and a member
// whose heartbeat expired leaves the others' view.
func TestMachineNATS(t *testing.T) {
	connectJS := func() jetstream.JetStream {
		nc, err := nats.Connect(machineNATS, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("NATS at %s: %v", machineNATS, err)
			}
			t.Skipf("NATS at %s not reachable: %v", machineNATS, err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	ctx := context.Background()
	service := "test" + nuid.Next()
	js := connectJS()
	t.Logf("NATS server %s", js.Conn().ConnectedServerVersion())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for _, b := range []string{MembersBucket(service), LeaseBucket(service)} {
			if err := js.DeleteKeyValue(ctx, b); err != nil {
				t.Logf("delete bucket %s: %v", b, err)
			}
		}
	})
	start := func(id string) (*Manager, context.CancelFunc) {
		m, err := New(ctx, shortTTLs(Config{JetStream: connectJS(), Service: service, ReplicaID: id}))
		if err != nil {
			t.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { m.Run(mctx); close(done) }()
		stop := func() { cancel(); <-done }
		t.Cleanup(stop)
		return m, stop
	}
	a, _ := start("a")
	b, _ := start("b")
	waitFor(t, "both members seen", 20*time.Second, func() (bool, string) {
		return slices.Equal(a.Members(), []string{"a", "b"}) && slices.Equal(b.Members(), []string{"a", "b"}), ""
	})

	la, err := a.Acquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(a.Config().LeaseTTL + time.Second) // renewals keep it
	if la.Err() != nil {
		t.Fatalf("renewed lease ended: %v", la.Err())
	}
	la.stopRenewing() // pause
	lb, err := b.Acquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	if la.Context().Err() == nil || !errors.Is(context.Cause(la.Context()), ErrLost) {
		t.Fatalf("b acquired while a's context is live (cause %v)", context.Cause(la.Context()))
	}
	if err := la.Renew(ctx); !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("late renewal: %v", err)
	}
	if err := CheckToken(ctx, b.cfg.JetStream, service, "acct-1", la.Token()); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("old token: %v", err)
	}
	la.Release(ctx)
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}

	// A killed member's heartbeat expires and the other sees it go.
	a.kill()
	waitFor(t, "the killed member leaves b's view", 20*time.Second, func() (bool, string) {
		return slices.Equal(b.Members(), []string{"b"}), ""
	})
}
