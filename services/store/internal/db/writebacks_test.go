package db_test

import (
	"context"
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

func ack(t *testing.T, d *db.DB, req *mailbusv1.AckWriteBackRequest) {
	t.Helper()
	if err := d.AckWriteBack(context.Background(), req); err != nil {
		t.Fatalf("AckWriteBack: %v", err)
	}
}

func pending(t *testing.T, d *db.DB, acct string) []*mailbusv1.WriteBack {
	t.Helper()
	wbs, err := d.ListPendingWriteBacks(context.Background(), acct, 100)
	if err != nil {
		t.Fatal(err)
	}
	return wbs
}

func TestFlagWriteBackAndUpstreamEcho(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		m := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1)))[0].MessageId
		if _, _, err := d.UpdateFlags(ctx, device, a.Id, []string{m}, []string{`\Seen`}, nil); err != nil {
			t.Fatal(err)
		}
		wbs := pending(t, d, a.Id)
		if len(wbs) != 1 {
			t.Fatalf("%d write-backs", len(wbs))
		}
		tg := wbs[0].GetFlags().GetTargets()
		if len(tg) != 1 || tg[0].Upstream.GetUid() != 5 || tg[0].MailboxName != "INBOX" || wbs[0].DeviceId != "phone" {
			t.Fatalf("write-back %v", wbs[0])
		}
		// The server has not seen the change yet: its old flags must not
		// undo the device's change.
		up := &mailbusv1.UpstreamId{MailboxId: inbox.Id, Uidvalidity: 1, Uid: 5}
		_, n, _, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{Upstream: up}}}})
		if err != nil || n != 0 {
			t.Fatalf("upstream flags during pending write-back: applied %d, %v", n, err)
		}
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})
		if len(pending(t, d, a.Id)) != 0 {
			t.Fatal("still pending after ack")
		}
		before := len(allEvents(t, d, a.Id))
		// The echo: the server now reports \Seen: no change, no event.
		_, n, _, err = d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{Upstream: up, Flags: []string{`\Seen`}}}}})
		if err != nil || n != 0 || len(allEvents(t, d, a.Id)) != before {
			t.Fatalf("echo made a change: applied %d, %v", n, err)
		}
		// A real upstream change applies, with upstream origin.
		_, n, _, err = d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{Upstream: up, Flags: []string{`\Seen`, `\Flagged`}}}}})
		if err != nil || n != 1 {
			t.Fatalf("upstream change: applied %d, %v", n, err)
		}
		evs := allEvents(t, d, a.Id)
		last := evs[len(evs)-1]
		if last.Origin.Kind != mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM || len(last.GetMessageUpdated().FlagsAdded) != 1 {
			t.Fatalf("last event %v", last)
		}
	})
}

func TestMoveWriteBackEchoAndPlacement(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		archive := mustMailbox(t, d, a.Id, "Archive", 2)
		raw := rawMessage(1)
		m := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, raw))[0].MessageId
		if _, _, err := d.MoveMessages(ctx, device, a.Id, []string{m}, archive.Id); err != nil {
			t.Fatal(err)
		}
		wb := pending(t, d, a.Id)[0]
		if wb.GetMove().GetToMailboxName() != "Archive" || wb.GetMove().Targets[0].Upstream.GetUid() != 5 {
			t.Fatalf("move write-back %v", wb)
		}
		// imapsync's IDLE sees the expunge in INBOX before the ack: the
		// message must stay (its move is in flight).
		if _, _, _, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: inbox.Id, Uidvalidity: 1, Uids: []uint32{5}}}}}); err != nil {
			t.Fatal(err)
		}
		// ...and the new copy in Archive before the ack: adopted, no
		// second message.
		res := mustIngest(t, d, imapItem(a.Id, archive.Id, 2, 9, raw))
		if res[0].Created || res[0].MessageId != m {
			t.Fatalf("echo ingest %v, want adoption of %s", res[0], m)
		}
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wb.Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED,
			Placements: []*mailbusv1.UpstreamPlacement{{MessageId: m, Upstream: &mailbusv1.UpstreamId{MailboxId: archive.Id, Uidvalidity: 2, Uid: 9}}}})
		evs := allEvents(t, d, a.Id)
		if countKind(evs, "message.created") != 1 || countKind(evs, "message.deleted") != 0 || countKind(evs, "message.updated") != 1 {
			t.Fatalf("events: created %d deleted %d updated %d", countKind(evs, "message.created"), countKind(evs, "message.deleted"), countKind(evs, "message.updated"))
		}
		s, err := d.GetMessageSummary(ctx, m)
		if err != nil || s.MailboxId != archive.Id {
			t.Fatalf("message after move: %v %v", s, err)
		}
		// Now an expunge of the new identity deletes it.
		if _, n, _, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: archive.Id, Uidvalidity: 2, Uids: []uint32{9}}}}}); err != nil || n != 1 {
			t.Fatalf("expunge: %d %v", n, err)
		}
	})
}

func TestFailedMoveFollowsTheServer(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		archive := mustMailbox(t, d, a.Id, "Archive", 2)
		res := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1)), imapItem(a.Id, inbox.Id, 1, 6, rawMessage(2)))
		ids := []string{res[0].MessageId, res[1].MessageId}
		if _, _, err := d.MoveMessages(ctx, device, a.Id, ids, archive.Id); err != nil {
			t.Fatal(err)
		}
		wb := pending(t, d, a.Id)[0]
		// Message 0 is gone upstream; the move of message 1 failed.
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wb.Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED,
			Reason: "message no longer exists on the server", GoneMessageIds: []string{ids[0]}})
		if _, err := d.GetMessageSummary(ctx, ids[0]); err == nil {
			t.Fatal("gone message still in the store")
		}
		s, err := d.GetMessageSummary(ctx, ids[1])
		if err != nil || s.MailboxId != inbox.Id {
			t.Fatalf("failed move not reverted: %v %v", s, err)
		}
		evs := allEvents(t, d, a.Id)
		last := evs[len(evs)-1].GetWritebackFailed()
		if last == nil || last.DeviceId != "phone" || last.WritebackId != wb.Id || len(last.MessageIds) != 2 {
			t.Fatalf("last event %v, want writeback.failed", evs[len(evs)-1])
		}
	})
}

func TestPOP3ChangesStayLocal(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		m := mustIngest(t, d, pop3Item(a.Id, "u1", rawMessage(1)))[0].MessageId
		folder, err := d.CreateMailbox(ctx, device, a.Id, "Receipts")
		if err != nil || !folder.LocalOnly {
			t.Fatalf("local folder: %v %v", folder, err)
		}
		if _, _, err := d.UpdateFlags(ctx, device, a.Id, []string{m}, []string{`\Flagged`}, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.MoveMessages(ctx, device, a.Id, []string{m}, folder.Id); err != nil {
			t.Fatal(err)
		}
		if wbs := pending(t, d, a.Id); len(wbs) != 0 {
			t.Fatalf("POP3 account got write-backs: %v", wbs)
		}
		// The moved message is still known by its UIDL: no re-download.
		res := mustIngest(t, d, pop3Item(a.Id, "u1", rawMessage(1)))
		if res[0].Created {
			t.Fatal("moved POP3 message downloaded again")
		}
	})
}

func TestMailboxRenameWithChildren(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		mustMailbox(t, d, a.Id, "INBOX", 1)
		parent := mustMailbox(t, d, a.Id, "Projects", 2)
		mustMailbox(t, d, a.Id, "Projects/2026", 3)
		if _, err := d.RenameMailbox(ctx, device, parent.Id, "Work"); err != nil {
			t.Fatal(err)
		}
		mbs, _, err := d.ListMailboxes(ctx, a.Id)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range mbs {
			names = append(names, m.Name)
		}
		if len(names) != 3 || names[0] != "INBOX" || names[1] != "Work" || names[2] != "Work/2026" {
			t.Fatalf("names %v", names)
		}
		wbs := pending(t, d, a.Id)
		if len(wbs) != 1 || wbs[0].GetRenameMailbox().GetOldName() != "Projects" {
			t.Fatalf("write-backs %v", wbs)
		}
		if _, err := d.RenameMailbox(ctx, device, inboxOf(t, d, a.Id).Id, "Old"); err == nil {
			t.Fatal("renamed the inbox")
		}
		if _, err := d.CreateMailbox(ctx, device, a.Id, "work"); err != nil {
			t.Fatalf("case-different name refused: %v", err)
		}
		if _, err := d.CreateMailbox(ctx, device, a.Id, "Work"); err == nil {
			t.Fatal("duplicate name accepted")
		}
		// Upstream deletes the folder: messages go with it, with events.
		mustIngest(t, d, imapItem(a.Id, parent.Id, 2, 1, rawMessage(1)))
		if _, _, _, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_MailboxDelete{MailboxDelete: &mailbusv1.UpstreamMailboxDelete{MailboxId: parent.Id}}}}); err != nil {
			t.Fatal(err)
		}
		evs := allEvents(t, d, a.Id)
		if countKind(evs, "mailbox.deleted") != 1 || countKind(evs, "message.deleted") != 1 {
			t.Fatalf("deleted events: mailbox %d message %d", countKind(evs, "mailbox.deleted"), countKind(evs, "message.deleted"))
		}
	})
}

// A folder a device renamed or deleted is still listed by the server until
// the write-back is applied: declaring it must not bring it back.
func TestPendingFolderChangesDoNotComeBack(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		projects := mustMailbox(t, d, a.Id, "Projects", 2)
		old := mustMailbox(t, d, a.Id, "Old", 3)
		if _, err := d.RenameMailbox(ctx, device, projects.Id, "Clients"); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteMailbox(ctx, device, old.Id); err != nil {
			t.Fatal(err)
		}
		got, err := d.UpsertMailboxes(ctx, a.Id, []*mailbusv1.UpstreamMailbox{{Name: "INBOX", Delimiter: "/"}, {Name: "Projects", Delimiter: "/"}, {Name: "Old", Delimiter: "/"}})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Mailbox.Name != "INBOX" {
			t.Fatalf("declared %v, want only INBOX", got)
		}
		mbs, _, _ := d.ListMailboxes(ctx, a.Id)
		var names []string
		for _, m := range mbs {
			names = append(names, m.Name)
		}
		if strings.Join(names, ",") != "Clients,INBOX" {
			t.Fatalf("mailboxes %v", names)
		}
	})
}

// The echo of an append adopted by ingest (no APPENDUID reached the store
// yet) gives later pending write-backs of the message its new identity, as
// a placement does.
func TestAdoptedEchoRetargetsPendingWriteBacks(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		drafts := mustMailbox(t, d, a.Id, "Drafts", 3)
		raw := rawMessage(7)
		s, err := d.AppendMessage(ctx, device, drafts.Id, raw, nil, zeroTime)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.UpdateFlags(ctx, device, a.Id, []string{s.Id}, []string{`\Flagged`}, nil); err != nil {
			t.Fatal(err)
		}
		res := mustIngest(t, d, imapItem(a.Id, drafts.Id, 3, 12, raw))
		if res[0].Created || res[0].MessageId != s.Id {
			t.Fatalf("echo not adopted: %v", res[0])
		}
		wbs := pending(t, d, a.Id)
		if len(wbs) != 2 || wbs[1].GetFlags().GetTargets()[0].GetUpstream().GetUid() != 12 {
			t.Fatalf("flags write-back not retargeted: %v", wbs)
		}
	})
}

// TestRefusedMailboxWriteBackIsAnnounced: a mailbox create, rename or
// delete the server refused ends in a writeback.failed event that names
// the mailbox and the device's name for it, and the store follows the
// server: the created mailbox is removed, the renamed one gets its old
// name back.
func TestRefusedMailboxWriteBackIsAnnounced(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		mustMailbox(t, d, a.Id, "INBOX", 1)
		old := mustMailbox(t, d, a.Id, "Old", 2)
		gone := mustMailbox(t, d, a.Id, "Gone", 3)
		created, err := d.CreateMailbox(ctx, device, a.Id, "~tilde")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.RenameMailbox(ctx, device, old.Id, "~renamed"); err != nil {
			t.Fatal(err)
		}
		if err := d.DeleteMailbox(ctx, device, gone.Id); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{created.Id: "~tilde", old.Id: "~renamed", gone.Id: "Gone"}
		for _, wb := range pending(t, d, a.Id) {
			ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wb.Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED,
				Reason: "imap: NO [CANNOT] Invalid mailbox name"})
		}
		got := map[string]string{}
		for _, ev := range allEvents(t, d, a.Id) {
			if f := ev.GetWritebackFailed(); f != nil {
				if f.DeviceId != "phone" || !strings.Contains(f.Reason, "Invalid mailbox name") || len(f.MessageIds) != 0 {
					t.Errorf("writeback.failed %v", f)
				}
				got[f.MailboxId] = f.MailboxName
			}
		}
		if len(got) != len(want) {
			t.Fatalf("writeback.failed events name mailboxes %v, want %v", got, want)
		}
		for id, name := range want {
			if got[id] != name {
				t.Errorf("writeback.failed for mailbox %s names %q, want %q", id, got[id], name)
			}
		}
		list, _, err := d.ListMailboxes(ctx, a.Id)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, m := range list {
			names = append(names, m.Name)
		}
		if strings.Join(names, ",") != "INBOX,Old" {
			t.Errorf("mailboxes after the refusals: %v, want INBOX,Old (the deleted one comes back with the next sync)", names)
		}
	})
}
