package pop3fetcher_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/ownership/ownershiptest"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// withOwnership makes a fetcher one replica among others, with its
// leases in the test's NATS, unpaced (every fake server is on
// 127.0.0.1).
func (e *env) withOwnership(replica string) fetcherOpts {
	return func(c *pop3fetcher.Config) {
		c.NATSURL = e.natsURL
		c.Ownership = &ownership.Config{ReplicaID: replica}
		c.HostLimit = hostlimit.Config{Rate: -1}
	}
}

// lease is an account's lease as the lease bucket holds it.
// leases reads every lease of the pop3fetcher service.
func (e *env) leases(t testing.TB) map[string]ownership.Holder {
	t.Helper()
	l, err := ownership.Holders(callCtx(t), e.js, "pop3fetcher")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// leasedByRendezvous reports whether every account is leased by the
// replica rendezvous hashing gives it among members.
func (e *env) leasedByRendezvous(t testing.TB, accounts []*mailbusv1.Account, members []string) bool {
	l := e.leases(t)
	for _, a := range accounts {
		if l[a.Id].Owner != ownership.Owner(a.Id, members) {
			return false
		}
	}
	return true
}

// TestReplicasShareAccounts runs three fetcher replicas with ownership on
// one store and one NATS: every account is fetched by the replica that
// rendezvous hashing gives it, under its lease; stopping one replica hands
// its accounts over to the others at once (well within the lease TTL),
// and they fetch new mail there; the stopped replica's fencing tokens are
// refused by the store; and no maildrop ever saw two sessions at once.
func TestReplicasShareAccounts(t *testing.T) {
	e := startStore(t)
	const n = 18
	var (
		servers  []*pop3test.Server
		accounts []*mailbusv1.Account
	)
	for i := range n {
		srv := pop3test.NewServer(t, pop3test.WithMailbox("u", "pw", someMessages(i*10, 2)...))
		host, port := hostPort(t, srv.Addr())
		servers = append(servers, srv)
		accounts = append(accounts, e.createAccount(t, account{name: fmt.Sprint("acct", i), host: host, port: port, user: "u", secret: "pw"}))
	}
	replicas := []string{"r1", "r2", "r3"}
	stops := map[string]func(){}
	audit := ownershiptest.NewAudit()
	conn, err := grpc.NewClient(e.addr, append(audit.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, id := range replicas {
		f, _ := e.newFetcher(t, e.withOwnership(id), func(c *pop3fetcher.Config) { c.Conn = conn })
		stops[id] = runFetcher(t, f)
	}
	waitFor(t, "every account leased by its rendezvous owner among r1, r2, r3", func() bool {
		return e.leasedByRendezvous(t, accounts, replicas)
	})
	for i, a := range accounts {
		waitFor(t, fmt.Sprintf("account %d fetched", i), func() bool { return len(e.stored(t, a.Id)) == 2 })
	}
	before := e.leases(t)
	var moved []*mailbusv1.Account
	for _, a := range accounts {
		if before[a.Id].Owner == "r1" {
			moved = append(moved, a)
		}
	}
	if len(moved) == 0 {
		t.Fatal("rendezvous hashing gave r1 no account of 18: the test proves nothing")
	}

	stops["r1"]()
	// Graceful: r1 released its leases and deleted its heartbeat, so the
	// others take its accounts without waiting for the 30 s TTLs.
	deadline := time.Now().Add(ownership.DefaultLeaseTTL / 2)
	for !e.leasedByRendezvous(t, accounts, replicas[1:]) {
		if time.Now().After(deadline) {
			t.Fatalf("r1's accounts not taken over within %v (half the lease TTL): leases %v", ownership.DefaultLeaseTTL/2, e.leases(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := e.leases(t)
	for i, a := range accounts {
		servers[i].Deliver("u", someMessages(i*10+2, 1)...)
		if before[a.Id].Owner != "r1" && after[a.Id].Token != before[a.Id].Token {
			t.Errorf("account %s moved from %s to %s although its owner stayed", a.Id, before[a.Id].Owner, after[a.Id].Owner)
		}
	}
	for i, a := range accounts {
		waitFor(t, fmt.Sprintf("account %d's new message fetched", i), func() bool { return len(e.stored(t, a.Id)) == 3 })
		e.checkStoredExactly(t, a.Id, wires(servers[i].Messages("u")))
	}
	// Every write of every replica carried its lease's token.
	if missing := audit.Missing(); len(missing) != 0 {
		t.Errorf("store writes without a lease token: %v", missing)
	}
	for _, m := range []string{"ClaimAccount", "IngestMessages", "ReportAccountStatus"} {
		if audit.Writes()["/mailbus.v1.IngestService/"+m] == 0 {
			t.Errorf("no %s seen: the audit is not watching", m)
		}
	}
	// r1's late writes, with its old tokens, are refused: its successor
	// claimed the account before fetching.
	for _, a := range moved {
		_, err := e.ingest.ReportAccountStatus(callCtx(t), &mailbusv1.ReportAccountStatusRequest{
			AccountId: a.Id, LeaseToken: before[a.Id].Token, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE},
		})
		if !ownership.IsStaleLease(err) {
			t.Errorf("account %s: a write with r1's token %d (now %s has %d): %v, want STALE_LEASE", a.Id, before[a.Id].Token, after[a.Id].Owner, after[a.Id].Token, err)
		}
		if after[a.Id].Token <= before[a.Id].Token {
			t.Errorf("account %s: token %d after the handover, not above %d", a.Id, after[a.Id].Token, before[a.Id].Token)
		}
	}
	for i, srv := range servers {
		if got := srv.MaxConcurrentSessions(); got != 1 {
			t.Errorf("account %d: %d sessions at once on its maildrop", i, got)
		}
	}
}

// TestStaleTokenStopsWorker: a fetcher without ownership sends token 0,
// which the store refuses once a replica with ownership has claimed the
// account; the worker stops before it touches the server.
func TestStaleTokenStopsWorker(t *testing.T) {
	e := startStore(t)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("u", "pw", someMessages(0, 1)...))
	a := e.fakeAccount(t, srv, "u", "pw", mailbusv1.Pop3Mode_POP3_MODE_KEEP)
	if _, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: 7}); err != nil {
		t.Fatal(err)
	}
	f, reg := e.newFetcher(t)
	runFetcher(t, f)
	waitFor(t, "the worker to stop on the stale token", func() bool {
		return metric(t, reg, "mailbus_pop3_stale_lease_stops_total") == 1
	})
	// --once claims too: the pass is refused before it connects.
	once, _ := e.newFetcher(t)
	if err := once.RunOnce(callCtx(t)); err == nil || !strings.Contains(err.Error(), "another replica works the account") {
		t.Fatalf("RunOnce on a claimed account: %v", err)
	}
	if n := srv.TotalSessions(); n != 0 {
		t.Fatalf("%d sessions with the server after the store refused the claim", n)
	}
	if got := e.stored(t, a.Id); len(got) != 0 {
		t.Fatalf("stored %d messages", len(got))
	}
}

// TestHostConnectionBudget: with a budget of one connection per host, the
// accounts of one server are polled one session at a time (each session
// lasts at least the server's 200 ms STAT delay, so without the budget
// their first passes would overlap), and every account is still fetched.
func TestHostConnectionBudget(t *testing.T) {
	e := startStore(t)
	opts := []pop3test.Option{pop3test.WithFault(pop3test.Delay("STAT", 200*time.Millisecond))}
	for i := range 4 {
		opts = append(opts, pop3test.WithMailbox(fmt.Sprint("u", i), "pw", someMessages(i*10, 1)...))
	}
	srv := pop3test.NewServer(t, opts...)
	host, port := hostPort(t, srv.Addr())
	var accounts []*mailbusv1.Account
	for i := range 4 {
		accounts = append(accounts, e.createAccount(t, account{name: fmt.Sprint("acct", i), host: host, port: port, user: fmt.Sprint("u", i), secret: "pw"}))
	}
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: 1} })
	runFetcher(t, f)
	for i, a := range accounts {
		waitFor(t, fmt.Sprintf("account %d fetched", i), func() bool { return len(e.stored(t, a.Id)) == 1 })
	}
	if got := srv.MaxConcurrentSessions(); got != 1 {
		t.Fatalf("%d sessions at once with a budget of one connection per host", got)
	}
}
