package imapsync_test

import (
	"slices"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// A device appends a message and flags it before imapsync gets to the
// append; both write-backs come in one page. The flag must reach the
// server once the append is placed, and stay in the store.
func TestAppendThenFlagsInOnePageFlagsTheAppendedMessage(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Drafts")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "INBOX", testMessage(0, "INBOX"))
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	sy := startSync(t, e, nil)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	sy.stop()
	ctx := ctxT(t)
	resp, err := e.mailboxes.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: e.mailboxID(t, a.Id, "Drafts"), Raw: testMessage(42, "Drafts"), Flags: []string{`\Draft`}, DeviceId: "A"})
	if err != nil {
		t.Fatal(err)
	}
	id := resp.Message.Id
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, nil)
	waitFor(t, "no pending write-backs", func() bool {
		r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id, Max: 10})
		return err == nil && len(r.Writebacks) == 0
	})
	time.Sleep(3 * time.Second)
	srv := serverFolder(t, tp, "Drafts")
	m, err := e.mailboxes.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: id})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("server Drafts %v; store flags %v", srv, m.GetMessage().GetSummary().GetFlags())
	for _, s := range srv {
		if !slices.Contains(s.flags, `\Flagged`) {
			t.Errorf("the device's \\Flagged never reached the server: %v", s.flags)
		}
	}
	if !slices.Contains(m.GetMessage().GetSummary().GetFlags(), `\Flagged`) {
		t.Errorf("the store lost the device's \\Flagged: %v", m.GetMessage().GetSummary().GetFlags())
	}
}
