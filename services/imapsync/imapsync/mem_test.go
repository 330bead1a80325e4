package imapsync_test

import (
	"testing"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestMemSyncBothWays runs the fallback paths (no CONDSTORE, no
// SPECIAL-USE) against imapmemserver: initial sync of several folders,
// third-party flag change, expunge and new mail, a device flag change and
// move written back, and a folder created upstream.
func TestMemSyncBothWays(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Archive", "Work")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 5 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	appendMsg(t, tp, "Work", testMessage(1, "Work"), imap.FlagSeen)
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, nil)

	check := func(what string, folders ...string) {
		t.Helper()
		for _, f := range folders {
			waitFor(t, what+" ("+f+")", func() bool {
				return sameView(serverFolder(t, tp, f), e.storeFolder(t, a.Id, f)) == nil
			})
		}
	}
	check("initial sync", "INBOX", "Archive", "Work")
	waitFor(t, "status idle", func() bool {
		return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})

	// Third party: flags, expunge, new mail.
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.UIDExpunge(imap.UIDSetNum(3)).Close(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "INBOX", testMessage(9, "INBOX"))
	check("third-party changes", "INBOX")

	// Device: \Seen on uid 1, move uid 4 to Archive.
	inbox := e.storeFolder(t, a.Id, "INBOX")
	ctx := ctxT(t)
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[1].id}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{inbox[4].id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "device changes on the server", func() bool {
		s := serverFolder(t, tp, "INBOX")
		_, still := s[4]
		return len(s[1].flags) == 1 && s[1].flags[0] == `\Seen` && !still && len(serverFolder(t, tp, "Archive")) == 1
	})
	check("after write-back", "INBOX", "Archive")
	arch := e.storeFolder(t, a.Id, "Archive")
	for _, m := range arch {
		if m.id != inbox[4].id {
			t.Errorf("moved message has a new id %s, want %s", m.id, inbox[4].id)
		}
	}

	// A folder created upstream.
	if err := tp.Create("Later", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "Later", testMessage(1, "Later"))
	check("new folder", "Later")
}
