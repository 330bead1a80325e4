package ownership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/accountrun"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// startNATS starts an embedded NATS server with JetStream for one test.
func startNATS(t *testing.T) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// connect returns a JetStream context on its own connection, as a
// separate process would have.
func connect(t *testing.T, s *server.Server) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// shortTTLs are test timings: a lease lives 3 s after its last renewal,
// the worker is stopped 1 s before that.
func shortTTLs(cfg Config) Config {
	cfg.LeaseTTL = 3 * time.Second
	cfg.SafetyMargin = time.Second
	cfg.RenewInterval = 500 * time.Millisecond
	cfg.MemberTTL = 2 * time.Second
	cfg.HeartbeatInterval = 300 * time.Millisecond
	cfg.RetryInterval = 200 * time.Millisecond
	return cfg
}

// waitFor polls cond until it holds or the (generous) deadline passes.
func waitFor(t *testing.T, what string, within time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %s", what, within, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tracker records which replica works which account and fails the test if
// two ever work the same account at once.
type tracker struct {
	t          *testing.T
	mu         sync.Mutex
	worker     map[string]string // account -> replica working it now
	violations []string
}

func newTracker(t *testing.T) *tracker {
	return &tracker{t: t, worker: map[string]string{}}
}

func (tr *tracker) work(replica string) func(ctx context.Context, a *mailbusv1.Account) {
	return func(ctx context.Context, a *mailbusv1.Account) {
		tr.mu.Lock()
		if other, ok := tr.worker[a.Id]; ok {
			tr.violations = append(tr.violations, fmt.Sprintf("%s started on %s while %s works it", replica, a.Id, other))
		}
		tr.worker[a.Id] = replica
		tr.mu.Unlock()
		<-ctx.Done()
		tr.mu.Lock()
		if tr.worker[a.Id] == replica {
			delete(tr.worker, a.Id)
		}
		tr.mu.Unlock()
	}
}

func (tr *tracker) snapshot() map[string]string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if len(tr.violations) > 0 {
		tr.t.Fatalf("an account was worked by two replicas at once: %v", tr.violations)
	}
	out := make(map[string]string, len(tr.worker))
	for k, v := range tr.worker {
		out[k] = v
	}
	return out
}

func (tr *tracker) check() {
	tr.t.Helper()
	tr.snapshot()
}

type lister struct{ accounts []*mailbusv1.Account }

func (l lister) ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error) {
	return &mailbusv1.ListAccountsResponse{Accounts: l.accounts}, nil
}

// replica is one fetcher replica in the test process: a Manager on its own
// connection and an accountrun.Supervisor.
type replica struct {
	id     string
	m      *Manager
	cancel context.CancelFunc
	done   chan struct{}
}

type cluster struct {
	t        *testing.T
	srv      *server.Server
	tr       *tracker
	accounts []*mailbusv1.Account
	cfg      func(Config) Config
	replicas []*replica
}

func (c *cluster) start(id string) *replica {
	c.t.Helper()
	_, js := connect(c.t, c.srv)
	ctx, cancel := context.WithCancel(context.Background())
	m, err := New(ctx, c.cfg(Config{JetStream: js, Service: "testfetcher", ReplicaID: id}))
	if err != nil {
		c.t.Fatal(err)
	}
	sup := m.Supervise(accountrun.Config{
		Accounts: lister{c.accounts},
		Work:     c.tr.work(id),
		Refresh:  time.Second,
	})
	r := &replica{id: id, m: m, cancel: cancel, done: make(chan struct{})}
	c.replicas = append(c.replicas, r)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); m.Run(ctx) }()
	go func() { defer wg.Done(); sup.Run(ctx) }()
	go func() { wg.Wait(); close(r.done) }()
	c.t.Cleanup(func() { cancel(); <-r.done })
	return r
}

// settled reports whether every account is worked by the replica
// rendezvous hashing over members gives it to.
func (c *cluster) settled(members ...string) func() (bool, string) {
	return func() (bool, string) {
		w := c.tr.snapshot()
		var wrong []string
		for _, a := range c.accounts {
			if want := Owner(a.Id, members); w[a.Id] != want {
				wrong = append(wrong, fmt.Sprintf("%s on %q, not %s", a.Id, w[a.Id], want))
			}
		}
		views := map[string][]string{}
		for _, r := range c.replicas {
			views[r.id] = r.m.Members()
		}
		if len(wrong) > 0 {
			id := strings.Fields(wrong[0])[0]
			for _, r := range c.replicas {
				if slices.Contains(r.m.Held(), id) {
					wrong[0] += " (lease held by " + r.id + ")"
				}
			}
			if e, err := c.replicas[0].m.leases.Get(context.Background(), id); err == nil {
				wrong[0] += fmt.Sprintf(" (lease key rev %d %s)", e.Revision(), e.Value())
			} else {
				wrong[0] += fmt.Sprintf(" (lease key: %v)", err)
			}
		}
		if len(wrong) > 5 {
			wrong = append(wrong[:5], "...")
		}
		return len(wrong) == 0, fmt.Sprintf("%d of %d accounts not (yet) on their rendezvous owner among %v: %v; member views %v",
			len(wrong), len(c.accounts), members, wrong, views)
	}
}

func newCluster(t *testing.T, n int, cfg func(Config) Config) *cluster {
	c := &cluster{t: t, srv: startNATS(t), tr: newTracker(t), cfg: cfg}
	for i := range n {
		c.accounts = append(c.accounts, &mailbusv1.Account{Id: fmt.Sprintf("acct-%03d", i), Generation: 1})
	}
	return c
}

// Three replicas share 200 accounts, each worked by exactly one replica at
// all times (the tracker fails on any overlap); a 4th replica takes about
// a quarter and nothing else moves; a killed replica's accounts are taken
// over after the TTL.
func TestReplicasShareAccounts(t *testing.T) {
	c := newCluster(t, 200, shortTTLs)
	c.start("r1")
	c.start("r2")
	r3 := c.start("r3")
	waitFor(t, "three replicas settle", 30*time.Second, c.settled("r1", "r2", "r3"))
	before := c.tr.snapshot()
	count := map[string]int{}
	for _, r := range before {
		count[r]++
	}
	t.Logf("3 replicas: %v", count)

	// A 4th replica: only the accounts rendezvous gives it move, all to it.
	c.start("r4")
	waitFor(t, "four replicas settle", 30*time.Second, c.settled("r1", "r2", "r3", "r4"))
	after := c.tr.snapshot()
	moved := 0
	for id, was := range before {
		if after[id] != was {
			moved++
			if after[id] != "r4" {
				t.Errorf("account %s moved from %s to %s, not to the new replica", id, was, after[id])
			}
		}
	}
	t.Logf("adding a 4th replica moved %d of 200 accounts", moved)
	if moved < 25 || moved > 80 {
		t.Errorf("adding a 4th replica moved %d of 200 accounts, want about 50", moved)
	}

	// Kill r3: no more heartbeats or renewals, nothing released. Its
	// workers stop at their local deadline; the others take its accounts
	// once its heartbeat and leases have expired.
	r3.m.kill()
	killed := time.Now()
	waitFor(t, "the others take over the killed replica's accounts", 60*time.Second, c.settled("r1", "r2", "r4"))
	elapsed := time.Since(killed)
	t.Logf("takeover after kill: %v (lease TTL %v)", elapsed, r3.m.Config().LeaseTTL)
	// A killed replica's leases can only be taken after they expire.
	if elapsed < r3.m.Config().LeaseTTL-r3.m.Config().SafetyMargin {
		t.Errorf("accounts taken over %v after the kill, before the leases could have expired", elapsed)
	}
	c.tr.check()
}

// A graceful stop releases the leases and removes the heartbeat, so the
// others take over well before the TTL (30 s here; the wait allows 20 s).
func TestGracefulStopHandsOverQuickly(t *testing.T) {
	long := func(cfg Config) Config {
		cfg.LeaseTTL = 30 * time.Second
		cfg.SafetyMargin = 5 * time.Second
		cfg.MemberTTL = 30 * time.Second
		cfg.RetryInterval = 5 * time.Second // a handoff must come from the release being seen, not the poll
		return cfg
	}
	c := newCluster(t, 200, long)
	c.start("r1")
	c.start("r2")
	r3 := c.start("r3")
	waitFor(t, "three replicas settle", 30*time.Second, c.settled("r1", "r2", "r3"))
	r3.cancel()
	<-r3.done
	stopped := time.Now()
	waitFor(t, "the others take over the stopped replica's accounts", 20*time.Second, c.settled("r1", "r2"))
	t.Logf("handoff after a graceful stop: %v (lease TTL 30s)", time.Since(stopped))
	c.tr.check()
}

// A paused replica (its renewal stopped, as in SIGSTOP or a partition)
// sees its worker context cancelled before another replica acquires the
// lease, and its late renewal with the old revision is refused: the
// revision is a fencing token.
func TestPausedOwnerIsFenced(t *testing.T) {
	s := startNATS(t)
	ctx := context.Background()
	regs := map[string]*prometheus.Registry{}
	newManager := func(id string) *Manager {
		_, js := connect(t, s)
		regs[id] = prometheus.NewRegistry()
		m, err := New(ctx, shortTTLs(Config{JetStream: js, Service: "testfetcher", ReplicaID: id, Registerer: regs[id]}))
		if err != nil {
			t.Fatal(err)
		}
		mctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { m.Run(mctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		return m
	}
	a, b := newManager("a"), newManager("b")

	la, err := a.Acquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	created := la.Revision()
	if _, err := b.TryAcquire(ctx, "acct-1"); !errors.Is(err, ErrHeld) {
		t.Fatalf("second acquire: %v, want ErrHeld", err)
	}
	// Renewals keep the lease well past its TTL.
	time.Sleep(2 * a.Config().LeaseTTL)
	if la.Err() != nil || la.Context().Err() != nil {
		t.Fatalf("a renewed lease ended: %v", la.Err())
	}
	if la.Revision() == created {
		t.Fatalf("no renewal happened (revision %d)", la.Revision())
	}
	if err := CheckToken(ctx, a.cfg.JetStream, "testfetcher", "acct-1", la.Token()); err != nil {
		t.Fatalf("the holder's token: %v", err)
	}

	// Pause: renewal stops, nothing is released.
	var mu sync.Mutex
	var events []string
	record := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	aStopped := make(chan time.Time, 1)
	go func() {
		<-la.Context().Done()
		record("a's worker context cancelled")
		aStopped <- time.Now()
	}()
	la.stopRenewing()
	paused := time.Now()

	lb, err := b.Acquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	bAcquired := time.Now()
	record("b acquired")
	defer lb.Release(ctx)

	cancelled := <-aStopped
	mu.Lock()
	order := slices.Clone(events)
	mu.Unlock()
	if len(order) != 2 || order[0] != "a's worker context cancelled" {
		t.Fatalf("order of events: %v", order)
	}
	if !cancelled.Before(bAcquired) {
		t.Fatalf("a's context was cancelled at %v, b acquired at %v", cancelled.Sub(paused), bAcquired.Sub(paused))
	}
	if !errors.Is(context.Cause(la.Context()), ErrLost) {
		t.Fatalf("cause of a's cancellation: %v, want ErrLost", context.Cause(la.Context()))
	}
	t.Logf("paused at 0: a's worker stopped at %v, b acquired at %v (TTL %v, margin %v)",
		cancelled.Sub(paused).Round(time.Millisecond), bAcquired.Sub(paused).Round(time.Millisecond), a.Config().LeaseTTL, a.Config().SafetyMargin)

	// The paused replica resumes: its renewal with the old revision fails.
	err = la.Renew(ctx)
	if !errors.Is(err, ErrLost) || !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("late renewal: %v, want ErrLost and ErrKeyRevisionMismatch", err)
	}
	// Fencing tokens: the new owner's is larger; the old one is refused.
	if lb.Token() <= la.Token() {
		t.Fatalf("token of the new owner %d is not above the old owner's %d", lb.Token(), la.Token())
	}
	if err := CheckToken(ctx, a.cfg.JetStream, "testfetcher", "acct-1", la.Token()); !errors.Is(err, ErrStaleToken) {
		t.Fatalf("old token: %v, want ErrStaleToken", err)
	}
	if err := CheckToken(ctx, a.cfg.JetStream, "testfetcher", "acct-1", lb.Token()); err != nil {
		t.Fatalf("new token: %v", err)
	}
	// Releasing the lost lease does not release b's.
	if err := la.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.TryAcquire(ctx, "acct-1"); !errors.Is(err, ErrHeld) {
		t.Fatalf("acquire after the stale release: %v, want ErrHeld", err)
	}
	// b's graceful release lets a take it at once.
	if err := lb.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(lb.Context()), ErrReleased) {
		t.Fatalf("cause after release: %v", context.Cause(lb.Context()))
	}
	la2, err := a.TryAcquire(ctx, "acct-1")
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	if la2.Token() <= lb.Token() {
		t.Fatalf("token %d after %d", la2.Token(), lb.Token())
	}
	metric := func(id, name string) float64 {
		t.Helper()
		n, err := testutil.GatherAndCount(regs[id], name)
		if err != nil || n != 1 {
			t.Fatalf("%s of %s: %d series, %v", name, id, n, err)
		}
		mfs, _ := regs[id].Gather()
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if m.GetCounter() != nil {
					return m.GetCounter().GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		return -1
	}
	for _, c := range []struct {
		id, name string
		want     float64
	}{
		{"a", "mailbus_ownership_leases_acquired_total", 2},
		{"a", "mailbus_ownership_leases_lost_total", 1},
		{"a", "mailbus_ownership_leases_released_total", 0},
		{"a", "mailbus_ownership_leases_held", 1},
		{"a", "mailbus_ownership_members", 2},
		{"b", "mailbus_ownership_leases_acquired_total", 1},
		{"b", "mailbus_ownership_leases_released_total", 1},
		{"b", "mailbus_ownership_leases_held", 0},
	} {
		if got := metric(c.id, c.name); got != c.want {
			t.Errorf("%s of %s = %v, want %v", c.name, c.id, got, c.want)
		}
	}
	la2.Release(ctx)
}

// A worker's context is cancelled at its local deadline when NATS stops
// answering, without waiting for NATS.
func TestDeadlineWithoutNATS(t *testing.T) {
	s := startNATS(t)
	nc, js := connect(t, s)
	ctx := context.Background()
	m, err := New(ctx, shortTTLs(Config{JetStream: js, Service: "testfetcher", ReplicaID: "a"}))
	if err != nil {
		t.Fatal(err)
	}
	l, err := m.TryAcquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	deadline := l.Deadline()
	nc.Close() // NATS unreachable from here on
	select {
	case <-l.Context().Done():
	case <-time.After(time.Until(deadline) + 30*time.Second):
		t.Fatal("the lease context outlived its deadline with NATS gone")
	}
	if now := time.Now(); now.Before(deadline) {
		t.Fatalf("cancelled %v before the deadline", deadline.Sub(now))
	}
	if !errors.Is(context.Cause(l.Context()), ErrLost) {
		t.Fatalf("cause %v", context.Cause(l.Context()))
	}
}

func TestConfigValidation(t *testing.T) {
	s := startNATS(t)
	_, js := connect(t, s)
	ctx := context.Background()
	for _, cfg := range []Config{
		{Service: "x"},
		{JetStream: js, Service: "bad name"},
		{JetStream: js, Service: "x", ReplicaID: "has space"},
		{JetStream: js, Service: "x", LeaseTTL: time.Second, SafetyMargin: 2 * time.Second},
		{JetStream: js, Service: "x", LeaseTTL: 3 * time.Second, SafetyMargin: time.Second, RenewInterval: 1500 * time.Millisecond},
		{JetStream: js, Service: "x", MemberTTL: time.Second, HeartbeatInterval: time.Second},
	} {
		if _, err := New(ctx, cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	m, err := New(ctx, Config{JetStream: js, Service: "x"})
	if err != nil {
		t.Fatal(err)
	}
	got := m.Config()
	if got.LeaseTTL != 30*time.Second || got.SafetyMargin != 5*time.Second || got.RenewInterval != 10*time.Second ||
		got.MemberTTL != 30*time.Second || got.HeartbeatInterval != 10*time.Second || got.RetryInterval != time.Second || got.ReplicaID == "" {
		t.Errorf("defaults: %+v", got)
	}
	if _, err := m.TryAcquire(ctx, "not a key"); err == nil {
		t.Error("an invalid account id was accepted")
	}
}

// Filter is false for every account until Run has announced the replica,
// true for every account when it is the only member, and false again once
// Run has ended; Supervise keeps a Filter of its own.
func TestFilterFollowsRun(t *testing.T) {
	s := startNATS(t)
	_, js := connect(t, s)
	m, err := New(context.Background(), shortTTLs(Config{JetStream: js, Service: "testfetcher", ReplicaID: "solo"}))
	if err != nil {
		t.Fatal(err)
	}
	a := &mailbusv1.Account{Id: "acct-1"}
	if m.Filter(a) {
		t.Fatal("Filter true before Run")
	}
	kicks := make(chan struct{}, 10)
	m.OnChange(func() { kicks <- struct{}{} })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { m.Run(ctx); close(done) }()
	waitFor(t, "the replica sees itself", 10*time.Second, func() (bool, string) {
		return m.Filter(a), fmt.Sprint(m.Members())
	})
	select {
	case <-kicks:
	case <-time.After(10 * time.Second):
		t.Fatal("no OnChange call when the member set changed")
	}
	tokens := make(chan uint64, 10)
	sup := m.Supervise(accountrun.Config{
		Accounts: lister{[]*mailbusv1.Account{{Id: "acct-1"}, {Id: "acct-2"}}},
		Work: func(ctx context.Context, a *mailbusv1.Account) {
			l := FromContext(ctx)
			if l == nil || l.Account() != a.Id {
				t.Errorf("worker of %s: lease %v in its context", a.Id, l)
			} else {
				tokens <- l.Token()
			}
			<-ctx.Done()
		},
		Filter:  func(a *mailbusv1.Account) bool { return a.Id != "acct-1" },
		Refresh: time.Hour, // only the member-set kick drives it
	})
	supDone := make(chan struct{})
	go func() { sup.Run(ctx); close(supDone) }()
	waitFor(t, "the supervisor runs acct-2 only, under its lease", 10*time.Second, func() (bool, string) {
		return slices.Equal(sup.Running(), []string{"acct-2"}) && slices.Equal(m.Held(), []string{"acct-2"}),
			fmt.Sprint(sup.Running(), m.Held())
	})
	if err := CheckToken(context.Background(), m.cfg.JetStream, "testfetcher", "acct-2", <-tokens); err != nil {
		t.Fatalf("the worker's token: %v", err)
	}
	if FromContext(context.Background()) != nil {
		t.Fatal("a lease in a plain context")
	}
	cancel()
	<-done
	<-supDone
	if held := m.Held(); len(held) != 0 {
		t.Fatalf("leases held after the supervisor stopped: %v", held)
	}
	if _, err := m.leases.Get(context.Background(), "acct-2"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("lease after a graceful stop: %v", err)
	}
	if m.Filter(a) || len(m.Members()) != 0 {
		t.Fatalf("after Run: Filter %v, members %v", m.Filter(a), m.Members())
	}
	// The heartbeat is gone from the bucket.
	if _, err := m.members.Get(context.Background(), "solo"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("heartbeat after a graceful stop: %v", err)
	}
}

// Requests whose answer is lost (cancelled or timed out after they left)
// must not leave a lease held by nobody: a create applied unseen is undone,
// a renewal applied unseen is taken up, and Release still deletes the key.
func TestAmbiguousOutcomes(t *testing.T) {
	s := startNATS(t)
	_, js := connect(t, s)
	ctx := context.Background()
	m, err := New(ctx, shortTTLs(Config{JetStream: js, Service: "testfetcher", ReplicaID: "a"}))
	if err != nil {
		t.Fatal(err)
	}

	// A create applied unseen: only this attempt's nonce is undone.
	if _, err := m.leases.Create(ctx, "acct-1", []byte(`{"owner":"a","nonce":"n1"}`)); err != nil {
		t.Fatal(err)
	}
	m.undoCreate("acct-1", "other-attempt")
	if _, err := m.leases.Get(ctx, "acct-1"); err != nil {
		t.Fatalf("another attempt's lease was undone: %v", err)
	}
	m.undoCreate("acct-1", "n1")
	if _, err := m.leases.Get(ctx, "acct-1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("a create applied unseen was not undone: %v", err)
	}

	// A renewal applied unseen: the next renewal is refused, recognises
	// its own lease, takes up the revision and does not lose the lease.
	l, err := m.TryAcquire(ctx, "acct-1")
	if err != nil {
		t.Fatal(err)
	}
	l.stopRenewing() // renew by hand only
	unseen, err := m.leases.Update(ctx, "acct-1", []byte(fmt.Sprintf(`{"owner":"a","token":%d}`, l.Token())), l.Revision())
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Renew(ctx); err == nil || errors.Is(err, ErrLost) {
		t.Fatalf("renewal after an unseen one: %v, want a temporary error", err)
	}
	if l.Err() != nil || l.Revision() != unseen {
		t.Fatalf("lease after an unseen renewal: err %v, revision %d, want %d", l.Err(), l.Revision(), unseen)
	}
	if err := l.Renew(ctx); err != nil {
		t.Fatalf("the renewal after taking up the revision: %v", err)
	}
	// Another unseen renewal, then Release: the key is deleted all the same.
	if _, err := m.leases.Update(ctx, "acct-1", []byte(fmt.Sprintf(`{"owner":"a","token":%d}`, l.Token())), l.Revision()); err != nil {
		t.Fatal(err)
	}
	if err := l.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.leases.Get(ctx, "acct-1"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("Release after an unseen renewal left the key: %v", err)
	}
}

func TestIsStaleLease(t *testing.T) {
	stale, err := status.New(codes.FailedPrecondition, "stale").WithDetails(&errdetails.ErrorInfo{Reason: StaleLeaseReason, Domain: "mailbus.v1"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := status.New(codes.FailedPrecondition, "other").WithDetails(&errdetails.ErrorInfo{Reason: "OTHER", Domain: "mailbus.v1"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"stale", stale.Err(), true},
		{"stale, wrapped", fmt.Errorf("ingest: %w", stale.Err()), true},
		{"other reason", other.Err(), false},
		{"no detail", status.Error(codes.FailedPrecondition, "x"), false},
		{"other code", status.Error(codes.Unavailable, "x"), false},
		{"not gRPC", errors.New("x"), false},
	}
	for _, tt := range tests {
		if got := IsStaleLease(tt.err); got != tt.want {
			t.Errorf("%s: IsStaleLease = %v, want %v", tt.name, got, tt.want)
		}
	}
	if TokenFromContext(context.Background()) != 0 {
		t.Error("TokenFromContext without a lease is not 0")
	}
}
