package imapsync_test

import (
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// A device moves a message to Archive and then flags it while imapsync is
// down; both write-backs come in one page. The move's placement retargets
// the flags write-back in the store, so imapsync must read the list again
// and flag the message in Archive, not report it gone from INBOX.
func TestMoveThenFlagsInOnePageFlagsTheMovedMessage(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Archive")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 3 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	sy := startSync(t, e, nil)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	sy.stop()
	inbox := e.storeFolder(t, a.Id, "INBOX")
	ctx := ctxT(t)
	id := inbox[1].id
	js := e.consume(t, a.Id)
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, nil)
	waitFor(t, "no pending write-backs", func() bool {
		r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id, Max: 10})
		return err == nil && len(r.Writebacks) == 0
	})
	time.Sleep(3 * time.Second)
	srv := serverFolder(t, tp, "Archive")
	st := e.storeFolder(t, a.Id, "Archive")
	t.Logf("server Archive %v; store Archive %v; writeback.failed events %d, message.deleted %d", srv, st,
		js.count(func(ev *mailbusv1.Event) bool { return ev.GetWritebackFailed() != nil }),
		js.count(func(ev *mailbusv1.Event) bool { return ev.GetMessageDeleted() != nil }))
	if _, err := e.mailboxes.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: id}); err != nil {
		t.Errorf("the moved and flagged message %s is gone from the store: %v", id, err)
	}
	if err := sameView(srv, st); err != nil {
		t.Errorf("Archive: %v", err)
	}
	for _, m := range srv {
		if len(m.flags) == 0 {
			t.Errorf("the device's \\Flagged never reached the server")
		}
	}
}
