package imapsync_test

import (
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Without MOVE, a move is UID COPY then, only after COPY's OK, \Deleted and
// UID EXPUNGE. When COPY is refused (the destination was deleted upstream
// meanwhile) the message must stay in its source, on the server and in the
// store. (Projects, not Archive: Dovecot re-creates special-use folders.)
func TestMoveWithoutMOVERefusedCopyKeepsTheMessage(t *testing.T) {
	s := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}, HideCapabilities: []string{"MOVE"}})
	e := startStore(t)
	deliver(t, s, "INBOX", 2)
	deliver(t, s, "Projects", 1)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	sy := startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil &&
			sameView(serverFolder(t, tp, "Projects"), e.storeFolder(t, a.Id, "Projects")) == nil
	})
	sy.stop()
	ctx := ctxT(t)
	id := e.storeFolder(t, a.Id, "INBOX")[1].id
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, ToMailboxId: e.mailboxID(t, a.Id, "Projects"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if err := tp.Unselect().Wait(); err != nil {
		t.Log(err)
	}
	if err := tp.Delete("Projects").Wait(); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, withRoots(s))
	waitFor(t, "no pending write-backs", func() bool {
		r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id, Max: 10})
		return err == nil && len(r.Writebacks) == 0
	})
	time.Sleep(3 * time.Second)
	srv := serverFolder(t, tp, "INBOX")
	_, err := e.mailboxes.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: id})
	t.Logf("server INBOX %d messages; store has the message: %v", len(srv), err == nil)
	if len(srv) != 2 || err != nil {
		t.Errorf("a refused COPY lost the message: server INBOX has %d of 2, store lookup: %v", len(srv), err)
	}
}
