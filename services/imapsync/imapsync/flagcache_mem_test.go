package imapsync_test

import (
	"slices"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// A third party flags a message while a device's flag change of the same
// message is pending (its STORE refused for now): the store ignores the
// upstream read while the write-back is pending, and once the write-back
// is applied the third party's flag must still reach the store (the
// cached flags must not pretend the store has it).
func TestMemThirdPartyFlagDuringPendingWriteBackReachesStore(t *testing.T) {
	// The device's STORE (+\Seen) is refused until imapsync has read
	// the flags once after the third party's change, while the
	// write-back is pending.
	var (
		mu         sync.Mutex
		refuseSeen bool
		readAfter  bool // a flag read after the third party's change
		thirdParty bool
	)
	h := &memHooks{
		store: func(flags *imap.StoreFlags) error {
			mu.Lock()
			defer mu.Unlock()
			if refuseSeen && !readAfter && slices.Contains(flags.Flags, imap.FlagSeen) {
				return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "try again later"}
			}
			return nil
		},
		fetch: func(o *imap.FetchOptions) {
			mu.Lock()
			defer mu.Unlock()
			if thirdParty && o.Flags && len(o.BodySection) == 0 {
				readAfter = true
			}
		},
	}
	e := startStore(t)
	mem := startMemHooked(t, h)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 2 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	sy := startSync(t, e, nil)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	sy.stop()

	mu.Lock()
	refuseSeen = true
	mu.Unlock()
	inbox := e.storeFolder(t, a.Id, "INBOX")
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[1].id}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	thirdParty = true
	mu.Unlock()
	startSync(t, e, nil)
	waitFor(t, "the device's \\Seen and the third party's \\Flagged in the store and on the server", func() bool {
		srv := serverFolder(t, tp, "INBOX")
		return sameView(srv, e.storeFolder(t, a.Id, "INBOX")) == nil && len(srv[1].flags) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if !readAfter {
		t.Fatal("imapsync never read the flags while the write-back was pending: the test proves nothing")
	}
}
