package imapsync_test

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/prometheus/client_golang/prometheus"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestInitialSyncListsOnceWithoutWriteBacks: an initial sync of one big
// folder, with the write-back poll interval passing during every chunk of
// FETCH batches but no write-back ever pending, lists the folder's UIDs
// (UID FETCH RFC822.SIZE) once. Pausing on the poll interval alone made it
// list the folder again after every chunk (review finding 1: 15 listings
// here).
func TestInitialSyncListsOnceWithoutWriteBacks(t *testing.T) {
	const n, batch = 1200, 10
	var sizeLists atomic.Int64
	h := &memHooks{
		fetch: func(o *imap.FetchOptions) {
			switch {
			case len(o.BodySection) == 0 && o.RFC822Size && !o.Flags:
				sizeLists.Add(1)
			case len(o.BodySection) > 0:
				// A chunk (8 batches) outlasts WriteBackPoll.
				time.Sleep(3 * time.Millisecond)
			}
		},
	}
	m := startMemHooked(t, h)
	c := dialPlain(t, m.addr, "alice", "secret")
	for i := range n {
		appendMsg(t, c, "INBOX", testMessage(i, "INBOX"))
	}
	e := startStore(t)
	a := e.createAccount(t, m.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.Registry = reg
		c.FetchBatch = batch
		c.WriteBackPoll = 20 * time.Millisecond
	})
	waitFor(t, "idle", func() bool { return gaugeValues(t, reg, "mailbus_imapsync_accounts")["idle"] == 1 })
	if got := len(e.storeFolder(t, a.Id, "INBOX")); got != n {
		t.Errorf("INBOX has %d messages in the store, want %d", got, n)
	}
	if got := sizeLists.Load(); got != 1 {
		t.Errorf("the initial sync listed the folder %d times, want 1", got)
	}
	if got := counterValues(t, reg, "mailbus_imapsync_folder_syncs_total")["initial"]; got != 1 {
		t.Errorf("initial folder syncs counted %v, want 1", got)
	}
}

// TestMoveAndAppendDuringPausedInitialSync: while INBOX's initial sync is
// held between FETCH batches, a device moves a stored INBOX message to
// Archive (not synced yet) and appends one to INBOX. The sync pauses after
// the chunk, applies both, and resumes from its cursor: server and store
// agree, with nothing lost or doubled (review finding 2).
func TestMoveAndAppendDuringPausedInitialSync(t *testing.T) {
	const n, batch = 1500, 10
	gate := make(chan struct{})
	closeGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(closeGate)
	var bodyFetches atomic.Int64
	h := &memHooks{fetch: func(o *imap.FetchOptions) {
		if len(o.BodySection) == 0 {
			return
		}
		// The 13th body FETCH (in INBOX's second chunk) waits until the
		// device's changes are made.
		if bodyFetches.Add(1) == 13 {
			<-gate
		}
	}}
	m := startMemHooked(t, h, "Archive")
	c := dialPlain(t, m.addr, "alice", "secret")
	for i := range n {
		appendMsg(t, c, "INBOX", testMessage(i, "INBOX"))
	}
	for i := range 5 {
		appendMsg(t, c, "Archive", testMessage(i, "Archive"))
	}
	e := startStore(t)
	a := e.createAccount(t, m.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.Registry = reg; c.FetchBatch = batch })
	var id string
	waitFor(t, "some INBOX messages", func() bool {
		inbox := e.storeFolder(t, a.Id, "INBOX")
		for _, sm := range inbox {
			id = sm.id
		}
		return len(inbox) >= 100
	})
	if _, err := e.mailboxes.MoveMessages(ctxT(t), &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.AppendMessage(ctxT(t), &mailbusv1.AppendMessageRequest{MailboxId: e.mailboxID(t, a.Id, "INBOX"), Raw: testMessage(9999, "INBOX"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	stored := len(e.storeFolder(t, a.Id, "INBOX"))
	closeGate()
	if stored >= n {
		t.Fatalf("the device's changes were made with %d of %d INBOX messages stored, want during the initial sync", stored, n)
	}
	waitFor(t, "idle", func() bool { return gaugeValues(t, reg, "mailbus_imapsync_accounts")["idle"] == 1 })
	tp := dialPlain(t, m.addr, "alice", "secret")
	for _, f := range []string{"INBOX", "Archive"} {
		waitFor(t, f+" same on server and store", func() bool { return sameView(serverFolder(t, tp, f), e.storeFolder(t, a.Id, f)) == nil })
	}
	// 1,500 - 1 moved + 1 appended; 5 + 1 moved.
	if got := len(e.storeFolder(t, a.Id, "INBOX")); got != n {
		t.Errorf("INBOX %d, want %d", got, n)
	}
	if got := len(e.storeFolder(t, a.Id, "Archive")); got != 6 {
		t.Errorf("Archive %d, want 6", got)
	}
}

// TestResumedInitialSyncGoesOnWithoutListing: a device's flag change made
// while INBOX's initial sync is held between FETCH batches pauses the sync
// after the chunk; the write-back is applied, and the resumed sync goes on
// with the UIDs it had, without listing the folder again.
func TestResumedInitialSyncGoesOnWithoutListing(t *testing.T) {
	const n, batch = 1200, 10
	gate := make(chan struct{})
	closeGate := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(closeGate)
	var bodyFetches, sizeLists atomic.Int64
	h := &memHooks{fetch: func(o *imap.FetchOptions) {
		if len(o.BodySection) == 0 {
			if o.RFC822Size && !o.Flags {
				sizeLists.Add(1)
			}
			return
		}
		if bodyFetches.Add(1) == 13 {
			<-gate
		}
	}}
	m := startMemHooked(t, h)
	c := dialPlain(t, m.addr, "alice", "secret")
	for i := range n {
		appendMsg(t, c, "INBOX", testMessage(i, "INBOX"))
	}
	e := startStore(t)
	a := e.createAccount(t, m.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.Registry = reg; c.FetchBatch = batch })
	var id string
	waitFor(t, "some INBOX messages", func() bool {
		inbox := e.storeFolder(t, a.Id, "INBOX")
		for _, sm := range inbox {
			id = sm.id
		}
		return len(inbox) >= 100
	})
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	stored := len(e.storeFolder(t, a.Id, "INBOX"))
	closeGate()
	if stored >= n {
		t.Fatalf("the device's change was made with %d of %d INBOX messages stored, want during the initial sync", stored, n)
	}
	waitFor(t, "idle", func() bool { return gaugeValues(t, reg, "mailbus_imapsync_accounts")["idle"] == 1 })
	tp := dialPlain(t, m.addr, "alice", "secret")
	waitFor(t, "INBOX same on server and store", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	if got := len(e.storeFolder(t, a.Id, "INBOX")); got != n {
		t.Errorf("INBOX %d, want %d", got, n)
	}
	if got := sizeLists.Load(); got != 1 {
		t.Errorf("the initial sync listed the folder %d times, want 1", got)
	}
}
