package imapsync_test

import (
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// A device moves a message and then deletes it while imapsync is down;
// both write-backs come in one page. The delete must act on the message
// where the move put it, so that it neither stays on the server nor comes
// back into the store.
func TestMoveThenDeleteInOnePageDeletesTheMovedMessage(t *testing.T) {
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
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, nil)
	waitFor(t, "no pending write-backs", func() bool {
		r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id, Max: 10})
		return err == nil && len(r.Writebacks) == 0
	})
	time.Sleep(3 * time.Second) // a few polls
	srvArch := serverFolder(t, tp, "Archive")
	stArch := e.storeFolder(t, a.Id, "Archive")
	t.Logf("server INBOX %d msgs, Archive %d msgs; store Archive %d msgs", len(serverFolder(t, tp, "INBOX")), len(srvArch), len(stArch))
	if len(srvArch) != 0 || len(stArch) != 0 {
		t.Errorf("the device deleted the message, but it is on the server in Archive (%d) and back in the store (%d)", len(srvArch), len(stArch))
	}
}
