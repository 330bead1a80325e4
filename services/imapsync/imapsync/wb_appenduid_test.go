package imapsync_test

import (
	"net"
	"regexp"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

var appendUIDCode = regexp.MustCompile(`\[APPENDUID [0-9]+ [0-9]+\] `)

type appendUIDStripper struct{ net.Conn }

func (c appendUIDStripper) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	out := appendUIDCode.ReplaceAll(b[:n], nil)
	copy(b, out)
	return len(out), err
}

// A server that gives no APPENDUID: imapsync finds the appended draft's UID
// itself before acknowledging the append, so a delete by the device right
// after acts on it upstream and the draft does not come back.
func TestDeleteOfAppendWithoutAppendUIDRemovesItUpstream(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Drafts")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) { a.PollInterval = durationpb.New(time.Hour) })
	startSync(t, e, func(c *imapsync.Config) {
		c.PollInterval = time.Hour
		c.WrapConn = func(_ string, nc net.Conn) net.Conn { return appendUIDStripper{nc} }
	})
	waitFor(t, "folders", func() bool { return e.mailboxID(t, a.Id, "Drafts") != "" })
	time.Sleep(500 * time.Millisecond)
	ctx := ctxT(t)
	pending := func() bool {
		r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id, Max: 10})
		return err == nil && len(r.Writebacks) == 0
	}
	resp, err := e.mailboxes.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: e.mailboxID(t, a.Id, "Drafts"), Raw: testMessage(42, "Drafts"), Flags: []string{`\Draft`}, DeviceId: "A"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "append applied", pending)
	if _, err := e.mailboxes.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: a.Id, MessageIds: []string{resp.Message.Id}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "delete applied", pending)
	if _, err := e.accounts.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{
		Account: &mailbusv1.Account{Id: a.Id, PollInterval: durationpb.New(time.Second)}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"poll_interval"}},
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	srv, st := serverFolder(t, tp, "Drafts"), e.storeFolder(t, a.Id, "Drafts")
	t.Logf("server Drafts %d, store Drafts %d", len(srv), len(st))
	if len(srv) != 0 || len(st) != 0 {
		t.Errorf("the device deleted the draft; server has %d, store has %d (resurrected)", len(srv), len(st))
	}
}
