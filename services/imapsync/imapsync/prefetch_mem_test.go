package imapsync_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemInitialSyncSecondConnection: an initial sync of several folders
// and enough messages fetches folders on a second connection only where
// both budgets allow it: the host's (hostlimit.Config.MaxConns) and the account's
// (Config.Connections). The server never sees more connections than the
// host's budget, and every message is stored once, whichever connection
// fetched it.
func TestMemInitialSyncSecondConnection(t *testing.T) {
	folders := []string{"INBOX", "Archive", "Sent", "Lists"}
	cases := []struct {
		name           string
		perFolder      int // 150: 600 in all, enough for a second connection (prefetchMinMessages)
		maxConns       int // 0: no host budget
		connections    int // 0: the default (3)
		wantPrefetch   bool
		wantPeakAtMost int
	}{
		{"host budget 2", 150, 2, 0, true, 2},
		{"host budget 1", 150, 1, 0, false, 1},
		{"one connection per account", 150, 0, 1, false, 1},
		{"496 messages", 124, 2, 0, false, 2}, // below prefetchMinMessages
		{"500 messages", 125, 2, 0, true, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			perFolder := tc.perFolder
			e := startStore(t)
			addr, lis := startCountedMem(t)
			c := dialPlain(t, addr, "alice", "secret")
			for _, f := range folders {
				if f != "INBOX" {
					if err := c.Create(f, nil).Wait(); err != nil {
						t.Fatal(err)
					}
				}
				for i := range perFolder {
					appendMsg(t, c, f, testMessage(i, f))
				}
			}
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitFor(t, "the test's connection closed", func() bool { return lis.open() == 0 })
			a := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
			reg := prometheus.NewRegistry()
			startSync(t, e, func(c *imapsync.Config) {
				c.Registry = reg
				c.FetchBatch = 50
				c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: tc.maxConns}
				if tc.connections != 0 {
					c.Connections = tc.connections
				}
			})
			waitFor(t, "the initial sync done", func() bool { return gaugeValues(t, reg, "mailbus_imapsync_accounts")["idle"] == 1 })
			for _, f := range folders {
				if n := len(e.storeFolder(t, a.Id, f)); n != perFolder {
					t.Errorf("%s: %d messages stored, want %d", f, n, perFolder)
				}
			}
			if n := counterValue(t, reg, "mailbus_imapsync_messages_total"); n != float64(len(folders)*perFolder) {
				t.Errorf("%v messages fetched, want each of the %d once", n, len(folders)*perFolder)
			}
			prefetched := counterValue(t, reg, "mailbus_imapsync_prefetched_folders_total")
			if tc.wantPrefetch != (prefetched > 0) {
				t.Errorf("%v folders fetched on a second connection; want some: %v", prefetched, tc.wantPrefetch)
			}
			if peak := lis.maxConcurrent(); peak > tc.wantPeakAtMost {
				t.Errorf("the server saw %d connections at once, the budget is %d", peak, tc.wantPeakAtMost)
			}
		})
	}
}

// counterValue sums a counter's series.
func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// TestMemWriteBackDuringPrefetch: a device's change made while the work
// connection waits for the folder the second connection of an initial
// sync is fetching reaches the server before that folder is done
// (decision 6): the second connection stops at its next batch boundary,
// the work connection applies the write-back, then fetches the rest of
// the folder itself. Every message is stored and fetched once. The
// second connection's FETCHes wait at a gate that opens only once the
// change was seen (on the server or as the prefetcher's stop), so the
// order does not depend on timing.
func TestMemWriteBackDuringPrefetch(t *testing.T) {
	const inbox, archive, batch = 20, 600, 50
	var (
		gate    = make(chan struct{}) // closed: the second connection's FETCHes go on
		served  atomic.Int64          // FETCHes of the second connection let through
		storeAt atomic.Int64          // served when the first STORE came, plus one
	)
	h := &memHooks{
		examinedFetch: func() { <-gate; served.Add(1) },
		store: func(*imap.StoreFlags) error {
			storeAt.CompareAndSwap(0, served.Load()+1)
			return nil
		},
	}
	m := startMemHooked(t, h, "Archive")
	openGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(openGate) // before the server closes, also on failure
	c := dialPlain(t, m.addr, "alice", "secret")
	for i := range inbox {
		appendMsg(t, c, "INBOX", testMessage(i, "INBOX"))
	}
	for i := range archive {
		appendMsg(t, c, "Archive", testMessage(i, "Archive"))
	}
	e := startStore(t)
	a := e.createAccount(t, m.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.Registry = reg
		c.FetchBatch = batch
		c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: 2}
		// The gate holds a FETCH longer than waitLong: no timeout ends
		// the second connection instead of the write-back.
		c.Timeout = 10 * waitLong
	})
	// INBOX done (the progress the work connection reports after each
	// folder): it now waits for Archive, which the second connection
	// holds at the gate.
	waitFor(t, "INBOX synced", func() bool { return e.account(t, a.Id).GetStatus().GetProgress().GetFoldersDone() >= 1 })
	var id string
	for _, sm := range e.storeFolder(t, a.Id, "INBOX") {
		id = sm.id
		break
	}
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the second connection stopped for the write-back, or the write-back applied", func() bool {
		return storeAt.Load() != 0 || counterValue(t, reg, "mailbus_imapsync_prefetch_yields_total") > 0
	})
	openGate()
	waitFor(t, "the write-back applied", func() bool { return storeAt.Load() != 0 })
	waitFor(t, "the initial sync done", func() bool { return gaugeValues(t, reg, "mailbus_imapsync_accounts")["idle"] == 1 })
	if n := storeAt.Load() - 1; n >= archive/batch {
		t.Errorf("the write-back reached the server after all %d FETCHes of the second connection", n)
	}
	for f, want := range map[string]int{"INBOX": inbox, "Archive": archive} {
		if n := len(e.storeFolder(t, a.Id, f)); n != want {
			t.Errorf("%s: %d messages stored, want %d", f, n, want)
		}
	}
	if n := counterValue(t, reg, "mailbus_imapsync_messages_total"); n != inbox+archive {
		t.Errorf("%v messages fetched, want each of the %d once", n, inbox+archive)
	}
}

// TestMemPrefetchStaleLease: the store refusing the second connection's
// lease token (another replica claimed the account) stops the whole
// session at once (decision 11): the work connection, waiting for the
// folder the second connection had, does not go on to select it.
func TestMemPrefetchStaleLease(t *testing.T) {
	const inbox, archive, batch = 20, 600, 50
	var (
		gate          = make(chan struct{})
		archiveSelect atomic.Bool // the work connection selected Archive
	)
	h := &memHooks{
		examinedFetch: func() { <-gate },
		selected: func(mailbox string, readOnly bool) {
			if mailbox == "Archive" && !readOnly {
				archiveSelect.Store(true)
			}
		},
	}
	m := startMemHooked(t, h, "Archive")
	openGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(openGate)
	c := dialPlain(t, m.addr, "alice", "secret")
	for i := range inbox {
		appendMsg(t, c, "INBOX", testMessage(i, "INBOX"))
	}
	for i := range archive {
		appendMsg(t, c, "Archive", testMessage(i, "Archive"))
	}
	e := startStore(t)
	a := e.createAccount(t, m.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.Registry = reg
		c.FetchBatch = batch
		c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: 2}
		c.Timeout = 10 * waitLong
	})
	waitFor(t, "INBOX synced", func() bool { return e.account(t, a.Id).GetStatus().GetProgress().GetFoldersDone() >= 1 })
	// Another replica (a lease token above this one's 0) claims it.
	if _, err := e.ingest.ClaimAccount(ctxT(t), &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: 1 << 40}); err != nil {
		t.Fatal(err)
	}
	openGate()
	waitFor(t, "the account's worker stopped as stale", func() bool {
		return counterValue(t, reg, "mailbus_imapsync_stale_lease_stops_total") > 0
	})
	if archiveSelect.Load() {
		t.Error("the work connection selected Archive after the second connection's STALE_LEASE")
	}
	if n := len(e.storeFolder(t, a.Id, "Archive")); n != 0 {
		t.Errorf("%d messages of Archive stored under the stale token", n)
	}
}

// TestMemPrefetchProgress: while the work connection waits for the
// folder the second connection is fetching, the account's progress
// counts what the second connection fetched. Gates on the second
// connection's FETCHes fix the order: its first batch of bodies goes
// only once the work connection reported INBOX done (and so waits for
// Archive), the next one only once the progress shows the first.
func TestMemPrefetchProgress(t *testing.T) {
	const inbox, archive, batch = 20, 600, 50
	var (
		first, rest = make(chan struct{}), make(chan struct{})
		fetches     atomic.Int64
	)
	// The second connection's first FETCH lists the UIDs, its second
	// fetches the first batch of bodies.
	h := &memHooks{examinedFetch: func() {
		switch fetches.Add(1) {
		case 1:
		case 2:
			<-first
		default:
			<-rest
		}
	}}
	m := startMemHooked(t, h, "Archive")
	openFirst, openRest := sync.OnceFunc(func() { close(first) }), sync.OnceFunc(func() { close(rest) })
	t.Cleanup(openFirst)
	t.Cleanup(openRest)
	c := dialPlain(t, m.addr, "alice", "secret")
	for i := range inbox {
		appendMsg(t, c, "INBOX", testMessage(i, "INBOX"))
	}
	for i := range archive {
		appendMsg(t, c, "Archive", testMessage(i, "Archive"))
	}
	e := startStore(t)
	a := e.createAccount(t, m.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.Registry = reg
		c.FetchBatch = batch
		c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: 2}
		c.Timeout = 10 * waitLong
		c.ProgressInterval = 50 * time.Millisecond
	})
	waitFor(t, "INBOX synced", func() bool { return e.account(t, a.Id).GetStatus().GetProgress().GetFoldersDone() >= 1 })
	if p := e.account(t, a.Id).GetStatus().GetProgress(); p.GetMessagesDone() != inbox {
		t.Fatalf("progress %v before the second connection's first batch, want %d messages done", p, inbox)
	}
	openFirst()
	waitFor(t, "the progress of the second connection's first batch", func() bool {
		return e.account(t, a.Id).GetStatus().GetProgress().GetMessagesDone() >= inbox+batch
	})
	openRest()
	waitFor(t, "the initial sync done", func() bool { return gaugeValues(t, reg, "mailbus_imapsync_accounts")["idle"] == 1 })
	if n := len(e.storeFolder(t, a.Id, "Archive")); n != archive {
		t.Errorf("Archive: %d messages stored, want %d", n, archive)
	}
}

// TestMemPrefetchYieldsSlot: the second connection of an initial sync
// gives the host's slot up when another account's work connection waits
// for one, even in the middle of a FETCH the server has not answered
// (held at a gate here until the other account has synced), and the
// first account's work connection then fetches the folder itself.
func TestMemPrefetchYieldsSlot(t *testing.T) {
	const inbox, archive, batch = 20, 600, 50
	gate := make(chan struct{})
	h := &memHooks{examinedFetch: func() { <-gate }}
	m := startMemHooked(t, h, "Archive")
	openGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(openGate)
	c := dialPlain(t, m.addr, "alice", "secret")
	for i := range inbox {
		appendMsg(t, c, "INBOX", testMessage(i, "INBOX"))
	}
	for i := range archive {
		appendMsg(t, c, "Archive", testMessage(i, "Archive"))
	}
	if err := c.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	other := startMem(t)
	oc := dialPlain(t, other.addr, "alice", "secret")
	for i := range 3 {
		appendMsg(t, oc, "INBOX", testMessage(i, "INBOX"))
	}
	if err := oc.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	e := startStore(t)
	a := e.createAccount(t, m.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, func(c *imapsync.Config) {
		c.FetchBatch = batch
		// Both servers are on 127.0.0.1: one budget of 2 connections.
		c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: 2}
		c.Timeout = 10 * waitLong
	})
	waitFor(t, "INBOX synced", func() bool { return e.account(t, a.Id).GetStatus().GetProgress().GetFoldersDone() >= 1 })
	b := e.createAccount(t, other.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	waitFor(t, "the other account's mail, the gate still closed", func() bool { return len(e.storeFolder(t, b.Id, "INBOX")) == 3 })
	openGate()
	waitFor(t, "Archive stored", func() bool { return len(e.storeFolder(t, a.Id, "Archive")) == archive })
}
