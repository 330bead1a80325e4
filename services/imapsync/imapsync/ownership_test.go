package imapsync_test

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/ownership/ownershiptest"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// countingListener counts the connections the server has open, and the
// most it had at once: the server's own view of concurrent sessions.
type countingListener struct {
	net.Listener
	mu           sync.Mutex
	active, peak int
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.active++
	l.peak = max(l.peak, l.active)
	l.mu.Unlock()
	return &countedConn{Conn: c, l: l}, nil
}

func (l *countingListener) maxConcurrent() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak
}

type countedConn struct {
	net.Conn
	l    *countingListener
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		c.l.active--
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// startCountedMem is startMem with a listener that counts connections.
func startCountedMem(t testing.TB) (addr string, lis *countingListener) {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "secret")
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       nopLogger{},
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis = &countingListener{Listener: l}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), lis
}

// leases reads every lease of the imapsync service.
func (e *env) leases(t testing.TB) map[string]ownership.Holder {
	t.Helper()
	l, err := ownership.Holders(ctxT(t), e.js, "imapsync")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func (e *env) leasedByRendezvous(t testing.TB, accounts []*mailbusv1.Account, members []string) bool {
	l := e.leases(t)
	for _, a := range accounts {
		if l[a.Id].Owner != ownership.Owner(a.Id, members) {
			return false
		}
	}
	return true
}

// TestReplicasShareAccounts runs three imapsync replicas with ownership
// on one store and one NATS: every account is synced by the replica that
// rendezvous hashing gives it, under its lease; stopping one replica hands
// its accounts over to the others at once (well within the lease TTL),
// and they sync new mail there; the stopped replica's fencing tokens are
// refused by the store; and no server ever had more connections than one
// replica opens (plus the test's own).
func TestReplicasShareAccounts(t *testing.T) {
	e := startStore(t)
	const n = 9
	var (
		accounts  []*mailbusv1.Account
		listeners []*countingListener
		appenders []func(i int)
	)
	for i := range n {
		addr, lis := startCountedMem(t)
		tp := dialPlain(t, addr, "alice", "secret") // the test's own connection, open throughout
		for j := range 2 {
			appendMsg(t, tp, "INBOX", testMessage(i*10+j, "INBOX"))
		}
		listeners = append(listeners, lis)
		appenders = append(appenders, func(j int) { appendMsg(t, tp, "INBOX", testMessage(i*10+j, "INBOX")) })
		accounts = append(accounts, e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
			a.Name = fmt.Sprint("acct", i)
		}))
	}
	replicas := []string{"r1", "r2", "r3"}
	syncers := map[string]*syncer{}
	audit := ownershiptest.NewAudit()
	conn, err := grpc.NewClient(e.addr, append(audit.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	for _, id := range replicas {
		syncers[id] = startSync(t, e, func(c *imapsync.Config) {
			c.StoreConn = conn
			c.Ownership = &ownership.Config{ReplicaID: id}
			c.HostLimit = hostlimit.Config{Rate: -1}
			c.Connections = 2 // one work connection, one IDLE on INBOX
		})
	}
	waitFor(t, "every account leased by its rendezvous owner among r1, r2, r3", func() bool {
		return e.leasedByRendezvous(t, accounts, replicas)
	})
	for i, a := range accounts {
		waitFor(t, fmt.Sprintf("account %d synced", i), func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 2 })
	}
	before := e.leases(t)
	var moved []*mailbusv1.Account
	for _, a := range accounts {
		if before[a.Id].Owner == "r1" {
			moved = append(moved, a)
		}
	}
	if len(moved) == 0 {
		t.Fatal("rendezvous hashing gave r1 no account of 9: the test proves nothing")
	}

	syncers["r1"].stop()
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
	for i := range accounts {
		appenders[i](i*10 + 2)
	}
	for i, a := range accounts {
		waitFor(t, fmt.Sprintf("account %d's new message synced", i), func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 3 })
	}
	// A device change on every account, written back by its owner (the
	// acknowledgement is a fenced write too).
	for i, a := range accounts {
		m := e.storeFolder(t, a.Id, "INBOX")
		var id string
		for _, sm := range m {
			id = sm.id
			break
		}
		if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "phone"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, fmt.Sprintf("account %d's write-back applied", i), func() bool {
			resp, err := e.ingest.ListPendingWriteBacks(ctxT(t), &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id})
			return err == nil && len(resp.Writebacks) == 0
		})
	}
	// Every write of every replica carried its lease's token.
	if missing := audit.Missing(); len(missing) != 0 {
		t.Errorf("store writes without a lease token: %v", missing)
	}
	for _, m := range []string{"ClaimAccount", "UpsertMailboxes", "SetMailboxSyncState", "IngestMessages", "ReportAccountStatus", "AckWriteBack"} {
		if audit.Writes()["/mailbus.v1.IngestService/"+m] == 0 {
			t.Errorf("no %s seen: the audit is not watching", m)
		}
	}
	for _, a := range moved {
		_, err := e.ingest.ReportAccountStatus(ctxT(t), &mailbusv1.ReportAccountStatusRequest{
			AccountId: a.Id, LeaseToken: before[a.Id].Token, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE},
		})
		if !ownership.IsStaleLease(err) {
			t.Errorf("account %s: a write with r1's token %d (now %s has %d): %v, want STALE_LEASE", a.Id, before[a.Id].Token, after[a.Id].Owner, after[a.Id].Token, err)
		}
	}
	for i, lis := range listeners {
		// The test's connection plus one replica's two.
		switch got := lis.maxConcurrent(); {
		case got > 3:
			t.Errorf("account %d: %d connections at once on its server: more than one replica worked it", i, got)
		case got < 2:
			t.Errorf("account %d: the server counted %d connections at once: the count is broken", i, got)
		}
	}
}

// TestStaleTokenStopsWorker: a syncer without ownership sends token 0,
// which the store refuses once a replica with ownership has claimed the
// account; the worker stops before it connects to the server.
func TestStaleTokenStopsWorker(t *testing.T) {
	e := startStore(t)
	addr, lis := startCountedMem(t)
	a := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	if _, err := e.ingest.ClaimAccount(ctxT(t), &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: 7}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.Registry = reg })
	waitFor(t, "the worker to stop on the stale token", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "mailbus_imapsync_stale_lease_stops_total" {
				return mf.GetMetric()[0].GetCounter().GetValue() == 1
			}
		}
		return false
	})
	if got := lis.maxConcurrent(); got != 0 {
		t.Fatalf("%d connections to the server after the store refused the claim", got)
	}
}
