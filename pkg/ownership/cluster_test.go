package ownership

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATSCluster starts three embedded NATS servers with JetStream,
// clustered, as the compose file runs them.
func startNATSCluster(t *testing.T) []*server.Server {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	routes := server.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d,nats://127.0.0.1:%d", ports[0], ports[1], ports[2]))
	var servers []*server.Server
	for i, p := range ports {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "mailbus", Host: "127.0.0.1", Port: p},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(s.Shutdown)
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
	}
	return servers
}

// On a 3-node cluster with replicated (R3) buckets, where JetStream
// reports a failed compare-and-set with another error code than on one
// server: a held lease is ErrHeld, a stale renewal is lost, a stale
// release leaves the new owner's lease alone.
func TestReplicatedBuckets(t *testing.T) {
	servers := startNATSCluster(t)
	ctx := context.Background()
	newManager := func(s *server.Server, id string) *Manager {
		_, js := connect(t, s)
		var m *Manager
		// The JetStream meta group needs a leader first.
		waitFor(t, "a replicated bucket can be created", 60*time.Second, func() (bool, string) {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			var err error
			m, err = New(cctx, shortTTLs(Config{JetStream: js, Service: "testfetcher", ReplicaID: id, Replicas: 3}))
			return err == nil, fmt.Sprint(err)
		})
		return m
	}
	a := newManager(servers[0], "a")
	b := newManager(servers[2], "b")
	st, err := a.leases.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas != 3 {
		t.Fatalf("lease bucket replicas %d", st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas)
	}

	la, err := a.Acquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.TryAcquire(ctx, "acct-1"); !errors.Is(err, ErrHeld) {
		t.Fatalf("second acquire on R3: %v, want ErrHeld", err)
	}
	la.stopRenewing()
	lb, err := b.Acquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	if la.Context().Err() == nil {
		t.Fatal("b acquired while a's context is live")
	}
	if err := la.Renew(ctx); !errors.Is(err, ErrLost) || !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("late renewal on R3: %v", err)
	}
	if err := la.Release(ctx); err != nil {
		t.Fatalf("stale release on R3: %v", err)
	}
	if err := CheckToken(ctx, b.cfg.JetStream, "testfetcher", "acct-1", lb.Token()); err != nil {
		t.Fatalf("the new owner's lease after a stale release: %v", err)
	}
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	// Read from the leader, a released lease fences its token at once.
	if err := CheckToken(ctx, b.cfg.JetStream, "testfetcher", "acct-1", lb.Token()); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("token of a released lease on R3: %v", err)
	}
	// kv.Create reads the key by a direct get, which a lagging replica may
	// answer: a take right after a release can be told "held" once, so
	// Acquire (which tries again) is the way in.
	actx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := a.Acquire(actx, "acct-1"); err != nil {
		t.Fatalf("acquire after release on R3: %v", err)
	}
}
