package imapsync_test

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// pendingWriteBacks is how many write-backs of the account are pending.
func (e *env) pendingWriteBacks(t testing.TB, accountID string) int {
	t.Helper()
	resp, err := e.ingest.ListPendingWriteBacks(ctxT(t), &mailbusv1.ListPendingWriteBacksRequest{AccountId: accountID, Max: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return len(resp.Writebacks)
}

// uidOf returns the UID of the message with the body hash in a folder as
// the server has it (0: none).
func uidOf(server map[uint32]storeMessage, hash string) uint32 {
	for u, m := range server {
		if m.hash == hash {
			return u
		}
	}
	return 0
}

// TestDovecotThirdPartyMoveThenDeviceMove is issue 17 A: a third party
// moves a message on the server, and right after, before imapsync has
// seen it, a device moves the same message to the same folder. The
// device's move finds the message gone from its source and its copy
// (the third party's) in the destination, which the store adopts. The
// message then has a server identity and must be an ordinary message
// again: the third party's flag change of it is applied, and its later
// move on the server leaves one message in the store, not two.
func TestDovecotThirdPartyMoveThenDeviceMove(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	if err := s.CreateMailbox("alice", "Projects/2026"); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, "Sent", 3, `\Seen`)
	deliver(t, s, "Archive", 1)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	sy := startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	check := func(what string, folders ...string) {
		t.Helper()
		for _, f := range folders {
			var last error
			waitFor(t, what+" ("+f+")", func() bool {
				last = sameView(serverFolder(t, tp, f), e.storeFolder(t, a.Id, f))
				return last == nil
			})
		}
	}
	check("initial sync", "Sent", "Archive", "Projects/2026")

	// imapsync is stopped, so that it sees neither move before both are
	// made; when it starts again it applies the device's move first.
	sy.stop()
	sent := e.storeFolder(t, a.Id, "Sent")
	moved := sent[2]
	if _, err := s.Doveadm("move", "-u", "alice", "Archive", "mailbox", "Sent", "uid", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.MoveMessages(ctxT(t), &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{moved.id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, withRoots(s))
	waitFor(t, "the device's move applied", func() bool { return e.pendingWriteBacks(t, a.Id) == 0 })
	check("after both moves", "Sent", "Archive")
	uid := uidOf(serverFolder(t, tp, "Archive"), moved.hash)
	if uid == 0 {
		t.Fatal("the moved message is not in Archive on the server")
	}
	if got := e.storeFolder(t, a.Id, "Archive")[uid].id; got != moved.id {
		t.Fatalf("Archive uid %d is message %q in the store, want the moved %q", uid, got, moved.id)
	}

	// The variant: a third party's flags on the moved copy.
	if err := s.AddFlags("alice", "Archive", uid, `\Flagged`, "$ThirdParty"); err != nil {
		t.Fatal(err)
	}
	check("the third party's flags on the moved copy", "Archive")

	// A later move on the server: one message, in Projects/2026.
	if _, err := s.Doveadm("move", "-u", "alice", "Projects/2026", "mailbox", "Archive", "uid", strconv.FormatUint(uint64(uid), 10)); err != nil {
		t.Fatal(err)
	}
	check("after the third party's second move", "Sent", "Archive", "Projects/2026")
	resp, err := e.mailboxes.ListMessages(ctxT(t), &mailbusv1.ListMessagesRequest{MailboxId: e.mailboxID(t, a.Id, "Archive")})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Messages); n != 1 {
		t.Errorf("Archive holds %d messages in the store, want 1 (the one delivered there)", n)
	}
}

// TestDovecotThirdPartyFlagsOnAdoptedCopy is issue 17 B's rule where the
// store adopts a copy: a third party moves a message and flags the copy,
// then a device moves the same message there. The write-back's sync of
// the destination adopts the copy while the device's move is in flight,
// so the store keeps its own flags and ignores the server's. Once the
// move has settled, the server's flags must be looked at again and win.
func TestDovecotThirdPartyFlagsOnAdoptedCopy(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	if err := s.CreateMailbox("alice", "Archive"); err != nil {
		t.Fatal(err)
	}
	deliver(t, s, "Sent", 2, `\Seen`)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	sy := startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	check := func(what string, folders ...string) {
		t.Helper()
		for _, f := range folders {
			waitFor(t, what+" ("+f+")", func() bool {
				return sameView(serverFolder(t, tp, f), e.storeFolder(t, a.Id, f)) == nil
			})
		}
	}
	check("initial sync", "Sent", "Archive")
	sy.stop()
	moved := e.storeFolder(t, a.Id, "Sent")[1]
	if _, err := s.Doveadm("move", "-u", "alice", "Archive", "mailbox", "Sent", "uid", "1"); err != nil {
		t.Fatal(err)
	}
	uid := uidOf(serverFolder(t, tp, "Archive"), moved.hash)
	if err := s.AddFlags("alice", "Archive", uid, `\Flagged`, "$ThirdParty"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.MoveMessages(ctxT(t), &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{moved.id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, withRoots(s))
	waitFor(t, "the device's move applied", func() bool { return e.pendingWriteBacks(t, a.Id) == 0 })
	check("the third party's flags on the adopted copy", "Sent", "Archive")
	if got := e.storeFolder(t, a.Id, "Archive")[uid].id; got != moved.id {
		t.Fatalf("Archive uid %d is message %q in the store, want the moved %q", uid, got, moved.id)
	}
}

// TestDovecotFlagsIgnoredForAChangeMadeMeanwhileAreReadAgain is the
// memserver test of the same name against Dovecot (with CONDSTORE: the
// device's STORE changes the message's MODSEQ, but the flag cache that
// followed it already claims the third party's flag).
func TestDovecotFlagsIgnoredForAChangeMadeMeanwhileAreReadAgain(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 2)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	testChangeMadeDuringRead(t, e, a, dialDovecot(t, s), withRoots(s), func() {
		if err := s.AddFlags("alice", "INBOX", 1, `\Flagged`); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDovecotIgnoredFlagsAreReadAgainOnceTheChangeSettles: the store
// ignores a third party's flag change because a device's change of the
// message is pending. That change, once applied, does not change the
// message on the server (the third party made the same change), so
// nothing on the server says to look at it again: imapsync must, when
// the write-back settles in the same session, and in the next session
// when it stopped before.
func TestDovecotIgnoredFlagsAreReadAgainOnceTheChangeSettles(t *testing.T) {
	t.Run("same session", func(t *testing.T) { testIgnoredFlagsReadAgain(t, false) })
	t.Run("after a restart", func(t *testing.T) { testIgnoredFlagsReadAgain(t, true) })
}

func testIgnoredFlagsReadAgain(t *testing.T, restart bool) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 2, `\Seen`)
	// INBOX is IDLEd and the poll is an hour: nothing but imapsync's own
	// rule reads INBOX again (a short poll would check it).
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	// While blocked, imapsync sees no pending write-back (so the device's
	// change stays pending); deferredSeen says when the store deferred
	// UID 1.
	var blocked, deferredSeen atomic.Bool
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		switch r := reply.(type) {
		case *mailbusv1.ListPendingWriteBacksResponse:
			if blocked.Load() {
				r.Writebacks = nil
			}
		case *mailbusv1.ApplyUpstreamChangesResponse:
			for _, up := range r.DeferredFlags {
				if up.GetUid() == 1 {
					deferredSeen.Store(true)
				}
			}
		}
		return nil
	}
	conn := interceptedStoreConn(t, e, intercept)
	sy := startSync(t, e, func(c *imapsync.Config) {
		c.StoreConn = conn
		c.RootCAs = s.CertPool()
	})
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	blocked.Store(true)
	msg := e.storeFolder(t, a.Id, "INBOX")[1].id
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{msg}, Remove: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	// The third party removes \Seen too, and flags it.
	if err := s.SetFlags("alice", "INBOX", 1, `\Flagged`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store to defer the third party's flags", deferredSeen.Load)
	if restart {
		sy.stop()
		startSync(t, e, withRoots(s))
	}
	blocked.Store(false)
	waitFor(t, "the device's change applied", func() bool { return e.pendingWriteBacks(t, a.Id) == 0 })
	waitFor(t, "the third party's \\Flagged in the store", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
}

// savedModseq is the HIGHESTMODSEQ of the folder's cursor in the store.
func (e *env) savedModseq(t testing.TB, accountID, name string) uint64 {
	t.Helper()
	resp, err := e.ingest.ListMailboxSyncStates(ctxT(t), &mailbusv1.ListMailboxSyncStatesRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range resp.Mailboxes {
		if st.GetMailbox().GetName() == name {
			return st.SyncedHighestmodseq
		}
	}
	t.Fatalf("no sync state of %s", name)
	return 0
}

// TestDovecotHeldModseqFollowsTheWaitingFlags: the cursor the store keeps
// is held below the flags the store ignored only as far as the ones still
// waiting need. A third party's change of UID 1 is ignored (a device's
// change of it is in flight), then one of UID 2; once UID 1's has
// settled and been read again, the cursor moves up to where UID 2 was
// read, not staying below UID 1 for as long as any flags wait (on a busy
// account it would never move, and every new session would read more).
// A new session started then still reads UID 2 again.
func TestDovecotHeldModseqFollowsTheWaitingFlags(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 3, `\Seen`)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	// The write-backs of blocked messages are hidden from imapsync, so
	// the device's changes to them stay in flight.
	var mu sync.Mutex
	blocked := map[string]bool{}
	deferred := map[uint32]bool{}
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		switch r := reply.(type) {
		case *mailbusv1.ListPendingWriteBacksResponse:
			r.Writebacks = slices.DeleteFunc(r.Writebacks, func(wb *mailbusv1.WriteBack) bool {
				for _, tg := range wb.GetFlags().GetTargets() {
					if blocked[tg.MessageId] {
						return true
					}
				}
				return false
			})
		case *mailbusv1.ApplyUpstreamChangesResponse:
			for _, up := range r.DeferredFlags {
				deferred[up.GetUid()] = true
			}
		}
		return nil
	}
	wasDeferred := func(uid uint32) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return deferred[uid] }
	}
	conn := interceptedStoreConn(t, e, intercept)
	sy := startSync(t, e, func(c *imapsync.Config) {
		c.StoreConn = conn
		c.RootCAs = s.CertPool()
	})
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	before := e.savedModseq(t, a.Id, "INBOX")
	msgs := e.storeFolder(t, a.Id, "INBOX")
	mu.Lock()
	blocked[msgs[1].id], blocked[msgs[2].id] = true, true
	mu.Unlock()
	for _, u := range []uint32{1, 2} {
		if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{msgs[u].id}, Remove: []string{`\Seen`}, DeviceId: "A"}); err != nil {
			t.Fatal(err)
		}
	}
	// The third party's changes, each read (and ignored) in its own
	// delta.
	for _, u := range []uint32{1, 2} {
		if err := s.SetFlags("alice", "INBOX", u, `\Flagged`); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the store to defer the third party's flags of UID "+strconv.Itoa(int(u)), wasDeferred(u))
	}
	// UID 1's change settles (a device change of UID 3 makes imapsync
	// look at its write-backs); UID 2's stays in flight.
	mu.Lock()
	delete(blocked, msgs[1].id)
	mu.Unlock()
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{msgs[3].id}, Add: []string{`\Answered`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "UID 1's third-party \\Flagged in the store", func() bool {
		return slices.Contains(e.storeFolder(t, a.Id, "INBOX")[1].flags, `\Flagged`)
	})
	waitFor(t, "the saved cursor to move up while UID 2 still waits", func() bool { return e.savedModseq(t, a.Id, "INBOX") > before })
	// A new session, with UID 2's change no longer hidden, reads it again.
	sy.stop()
	startSync(t, e, withRoots(s))
	waitFor(t, "the device's changes applied", func() bool { return e.pendingWriteBacks(t, a.Id) == 0 })
	waitFor(t, "the third party's \\Flagged on UID 2 in the store", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
}

// TestDovecotExpungedRecheckReleasesTheCursor: a message whose third-party
// flags the store ignored (a device's change of it in flight) is then
// expunged on the server. Its flags are no longer to be read, so the
// cursor the store keeps is no longer held below them, at the delta that
// saw the expunge; before, it stayed held until some later delta of the
// folder (an hour's poll here).
func TestDovecotExpungedRecheckReleasesTheCursor(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 2, `\Seen`)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	var blocked, deferredSeen, expungeSent atomic.Bool
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if r, ok := req.(*mailbusv1.ApplyUpstreamChangesRequest); ok {
			for _, c := range r.Changes {
				if slices.Contains(c.GetExpunge().GetUids(), 1) {
					defer expungeSent.Store(true)
				}
			}
		}
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		switch r := reply.(type) {
		case *mailbusv1.ListPendingWriteBacksResponse:
			if blocked.Load() {
				r.Writebacks = nil
			}
		case *mailbusv1.ApplyUpstreamChangesResponse:
			for _, up := range r.DeferredFlags {
				if up.GetUid() == 1 {
					deferredSeen.Store(true)
				}
			}
		}
		return nil
	}
	conn := interceptedStoreConn(t, e, intercept)
	startSync(t, e, func(c *imapsync.Config) {
		c.StoreConn = conn
		c.RootCAs = s.CertPool()
	})
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	before := e.savedModseq(t, a.Id, "INBOX")
	blocked.Store(true)
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{e.storeFolder(t, a.Id, "INBOX")[1].id}, Remove: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetFlags("alice", "INBOX", 1, `\Flagged`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the store to defer the third party's flags", deferredSeen.Load)
	if err := s.Expunge("alice", "INBOX", 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expunge of UID 1 sent", expungeSent.Load)
	waitFor(t, "the saved cursor to move up", func() bool { return e.savedModseq(t, a.Id, "INBOX") > before })
}
