package imapsync_test

import (
	"net"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// Without MOVE: the connection is cut after COPY reached the server but
// before \Deleted/EXPUNGE. The retry must find the copy in the destination
// and only delete the source: one copy upstream and in the store.
func TestMoveWithoutMOVERetryAfterCopyMakesNoDuplicate(t *testing.T) {
	s := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}, HideCapabilities: []string{"MOVE"}})
	e := startStore(t)
	deliver(t, s, "INBOX", 3)
	deliver(t, s, "Archive", 1)
	a := e.createAccount(t, s.IMAPAddr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	tr := &trigger{word: " COPY ", ch: make(chan struct{})}
	first := startSync(t, e, func(c *imapsync.Config) {
		c.ShutdownGrace = -1
		c.WrapConn = func(_ string, nc net.Conn) net.Conn { return &triggerConn{Conn: nc, tr: tr} }
	})
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil && sameView(serverFolder(t, tp, "Archive"), e.storeFolder(t, a.Id, "Archive")) == nil
	})
	ctx := ctxT(t)
	id := e.storeFolder(t, a.Id, "INBOX")[2].id
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-tr.ch:
	case <-time.After(waitLong):
		t.Fatal("COPY never sent")
	}
	first.stop()
	startSync(t, e, nil)
	waitFor(t, "write-back applied", func() bool {
		r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id})
		return err == nil && len(r.Writebacks) == 0
	})
	time.Sleep(3 * time.Second)
	srv, st := serverFolder(t, tp, "Archive"), e.storeFolder(t, a.Id, "Archive")
	t.Logf("Archive: server %d, store %d (want 2 each)", len(srv), len(st))
	if len(srv) != 2 || len(st) != 2 {
		t.Errorf("duplicate after a retried COPY fallback: server %d, store %d, want 2", len(srv), len(st))
	}
}
