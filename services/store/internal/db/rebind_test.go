package db_test

import (
	"context"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// TestRebindMessages: after a UIDVALIDITY change the fetcher rebinds the
// messages it matched; they keep their ids, no event is written, the new
// identity is the ingest key, an expunge of the old identity no longer
// touches them, and a pending write-back follows the message.
func TestRebindMessages(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		res := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1)), imapItem(a.Id, inbox.Id, 1, 6, rawMessage(2)))
		m1, m2 := res[0].MessageId, res[1].MessageId
		if _, _, err := d.UpdateFlags(ctx, device, a.Id, []string{m1}, []string{`\Seen`}, nil); err != nil {
			t.Fatal(err)
		}
		before := len(allEvents(t, d, a.Id))
		n, err := d.RebindMessages(ctx, a.Id, []*mailbusv1.UpstreamPlacement{{MessageId: m1, Upstream: &mailbusv1.UpstreamId{MailboxId: inbox.Id, Uidvalidity: 2, Uid: 1}}})
		if err != nil || n != 1 {
			t.Fatalf("RebindMessages: %d %v", n, err)
		}
		if after := len(allEvents(t, d, a.Id)); after != before {
			t.Fatalf("rebinding wrote %d events", after-before)
		}
		// Again: a no-op.
		if n, err := d.RebindMessages(ctx, a.Id, []*mailbusv1.UpstreamPlacement{{MessageId: m1, Upstream: &mailbusv1.UpstreamId{MailboxId: inbox.Id, Uidvalidity: 2, Uid: 1}}}); err != nil || n != 0 {
			t.Fatalf("second RebindMessages: %d %v", n, err)
		}
		// The new identity is the ingest key.
		if r := mustIngest(t, d, imapItem(a.Id, inbox.Id, 2, 1, rawMessage(1))); r[0].Created || r[0].MessageId != m1 {
			t.Fatalf("ingest under the new identity: %v", r[0])
		}
		// The pending flags write-back targets the new identity.
		wb := pending(t, d, a.Id)[0]
		if up := wb.GetFlags().Targets[0].Upstream; up.GetUidvalidity() != 2 || up.GetUid() != 1 {
			t.Fatalf("write-back target %v", up)
		}
		// Expunging the old identities deletes only the unmatched message.
		if _, n, _, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: inbox.Id, Uidvalidity: 1, Uids: []uint32{5, 6}}}}}); err != nil || n != 1 {
			t.Fatalf("expunge of old identities: %d %v", n, err)
		}
		if _, err := d.GetMessageSummary(ctx, m1); err != nil {
			t.Fatalf("rebound message: %v", err)
		}
		if _, err := d.GetMessageSummary(ctx, m2); err == nil {
			t.Fatal("unmatched message still there")
		}
		// Invalid input.
		if _, err := d.RebindMessages(ctx, a.Id, []*mailbusv1.UpstreamPlacement{{MessageId: m1, Upstream: &mailbusv1.UpstreamId{MailboxId: inbox.Id}}}); err == nil {
			t.Fatal("rebinding to uid 0 accepted")
		}
		p := mustCreate(t, d, pop3Account("pop"))
		if _, err := d.RebindMessages(ctx, p.Id, nil); err == nil {
			t.Fatal("rebinding on a POP3 account accepted")
		}
	})
}
