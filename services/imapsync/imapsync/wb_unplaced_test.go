package imapsync_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// A server that answers APPEND with OK but loses the message: the draft
// is never placed (no UID ever). A flag change on it retries until the
// attempt limit, then fails, and since the sync of its folder found it
// absent the store deletes it: the store follows the server.
func TestMemWriteBackOnNeverPlacedMessageEndsGone(t *testing.T) {
	h := &memHooks{appendLost: func(mailbox string) bool { return mailbox == "Drafts" }}
	e := startStore(t)
	mem := startMemHooked(t, h, "Drafts")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, func(c *imapsync.Config) {
		c.WriteBackRetry = 50 * time.Millisecond
		c.RetryMax = 200 * time.Millisecond
	})
	waitFor(t, "folders", func() bool { return e.mailboxID(t, a.Id, "Drafts") != "" })
	js := e.consume(t, a.Id)
	ctx := ctxT(t)
	pending := func() bool {
		r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id, Max: 10})
		return err == nil && len(r.Writebacks) == 0
	}
	resp, err := e.mailboxes.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: e.mailboxID(t, a.Id, "Drafts"), Raw: testMessage(42, "Drafts"), DeviceId: "A"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "append applied", pending)
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{resp.Message.Id}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the flag write-back failed", func() bool {
		return js.count(func(ev *mailbusv1.Event) bool { return ev.GetWritebackFailed() != nil }) == 1
	})
	waitFor(t, "no pending write-backs", pending)
	_, err = e.mailboxes.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: resp.Message.Id})
	if status.Code(err) != codes.NotFound {
		t.Errorf("the store keeps a message the server never had: GetMessage: %v", err)
	}
	if err := sameView(serverFolder(t, tp, "Drafts"), e.storeFolder(t, a.Id, "Drafts")); err != nil {
		t.Errorf("store and server differ: %v", err)
	}
}
