package imapsync_test

import (
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemOneConnection: with Connections = 1 the account keeps a single
// upstream connection and IDLEs on it between steps. Polls are an hour
// apart, so new mail and a third party's flag change can only arrive by
// that IDLE, and a device's change only by ending it on the NATS wake-up.
func TestMemOneConnection(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Archive")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 2 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) { a.PollInterval = nil })
	sy := startSync(t, e, func(c *imapsync.Config) {
		c.Connections = 1
		c.PollInterval = time.Hour
		c.WriteBackPoll = time.Hour
	})
	inSync := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	}
	inSync("initial sync")
	// imapmemserver sends an update that came between a SELECT and the
	// IDLE after it only with the next update (Dovecot sends it when IDLE
	// starts), so one more message is appended every second until the
	// store has caught up; each arrives by IDLE or not at all.
	next := 10
	pushed := func(what string) {
		t.Helper()
		deadline := time.Now().Add(waitLong)
		for poke := time.Now(); sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) != nil; {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			if time.Since(poke) > time.Second {
				appendMsg(t, tp, "INBOX", testMessage(next, "INBOX"))
				next++
				poke = time.Now()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(t, "status idle", func() bool {
		return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})

	appendMsg(t, tp, "INBOX", testMessage(2, "INBOX"))
	pushed("new mail pushed by IDLE")

	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	pushed("a third party's flag change pushed by IDLE")

	inbox := e.storeFolder(t, a.Id, "INBOX")
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[2].id}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device's change on the server", func() bool {
		s := serverFolder(t, tp, "INBOX")
		return len(s[2].flags) == 1 && s[2].flags[0] == `\Seen`
	})
	inSync("after the write-back")

	sy.cuts.mu.Lock()
	n := len(sy.cuts.conns)
	sy.cuts.mu.Unlock()
	if n != 1 {
		t.Errorf("%d upstream connections, want 1", n)
	}
}

// TestDovecotOneConnection: the same on Dovecot (CONDSTORE, TLS), with
// one more step: a third party's flag change while the account is busy
// writing back is still seen (INBOX's HIGHESTMODSEQ, compared when IDLE
// starts again).
func TestDovecotOneConnection(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 2)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	cuts := &cutter{}
	startSync(t, e, func(c *imapsync.Config) {
		withRoots(s)(c)
		c.Connections = 1
		c.WriteBackPoll = time.Hour
		c.WrapConn = cuts.wrap
	})
	tp := dialDovecot(t, s)
	inSync := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	}
	inSync("initial sync")
	waitFor(t, "status idle", func() bool {
		return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	appendMsg(t, tp, "INBOX", testMessage(7, "INBOX"))
	inSync("new mail by IDLE")

	inbox := e.storeFolder(t, a.Id, "INBOX")
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[1].id}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the device's change on the server", func() bool {
		m := serverFolder(t, tp, "INBOX")[1]
		return len(m.flags) == 1 && m.flags[0] == `\Seen`
	})
	inSync("both changes in the store")

	cuts.mu.Lock()
	n := len(cuts.conns)
	cuts.mu.Unlock()
	if n != 1 {
		t.Errorf("%d upstream connections, want 1", n)
	}
}
