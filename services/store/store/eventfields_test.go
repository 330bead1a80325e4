package store_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// withTwoAttachments is a message with a text body and two attachments, one
// with a non-ASCII file name (RFC 2231).
const withTwoAttachments = "From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: reports\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"xyz\"\r\n\r\n" +
	"--xyz\r\nContent-Type: text/plain\r\n\r\nAttached.\r\n" +
	"--xyz\r\nContent-Type: text/csv\r\nContent-Disposition: attachment; filename=\"q1.csv\"\r\n\r\na,b\r\n1,2\r\n" +
	"--xyz\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename*=UTF-8''%C3%9Cbersicht.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0=\r\n" +
	"--xyz--\r\n"

// TestEventFieldsOnStreamAndWatch checks that the names and attachments an
// event carries (issue 13) reach both of its readers alike: a backend on
// JetStream and a device on WatchChanges get the same event, for a message
// ingested through the IngestService and for a device's flag change, move,
// mailbox rename and delete through the MailboxService.
func TestEventFieldsOnStreamAndWatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{})
		acct := e.createAccount(t, imapAccount("work"))
		up, err := e.ingest.UpsertMailboxes(callCtx(t), &mailbusv1.UpsertMailboxesRequest{AccountId: acct.Id, Mailboxes: []*mailbusv1.UpstreamMailbox{
			{Name: "INBOX", Delimiter: "/", Uidvalidity: 1},
			{Name: "Archive", Delimiter: "/", Uidvalidity: 2, Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE},
		}})
		if err != nil {
			t.Fatalf("UpsertMailboxes: %v", err)
		}
		inbox, archive := up.Mailboxes[0].Mailbox, up.Mailboxes[1].Mailbox
		msg := e.mustIngest(t, imapItem(acct.Id, inbox.Id, 1, 1, []byte(withTwoAttachments)))[0].MessageId
		ids := []string{msg}
		if _, err := e.mailboxes.UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: ids, Add: []string{`\Seen`}, DeviceId: "phone"}); err != nil {
			t.Fatalf("UpdateFlags: %v", err)
		}
		if _, err := e.mailboxes.MoveMessages(callCtx(t), &mailbusv1.MoveMessagesRequest{AccountId: acct.Id, MessageIds: ids, ToMailboxId: archive.Id, DeviceId: "phone"}); err != nil {
			t.Fatalf("MoveMessages: %v", err)
		}
		if _, err := e.mailboxes.RenameMailbox(callCtx(t), &mailbusv1.RenameMailboxRequest{MailboxId: archive.Id, NewName: "Kept", DeviceId: "phone"}); err != nil {
			t.Fatalf("RenameMailbox: %v", err)
		}
		if _, err := e.mailboxes.DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: ids, DeviceId: "phone"}); err != nil {
			t.Fatalf("DeleteMessages: %v", err)
		}

		e.waitPublished(t)
		var onStream []*mailbusv1.Event
		for _, g := range readStream(t, e.js, e.stream, events.AccountSubjects(acct.Id)) {
			onStream = append(onStream, g.ev)
		}
		w := e.watch(t, &mailbusv1.WatchChangesRequest{AccountId: acct.Id, SkipStatus: true})
		var watched []*mailbusv1.Event
		for ev := w.next(false); ev != nil; {
			watched = append(watched, ev)
			resp, err := w.stream.Recv()
			if err != nil {
				t.Fatalf("WatchChanges: %v", err)
			}
			ev = resp.Event
		}
		if len(onStream) != len(watched) {
			t.Fatalf("%d events on the stream, %d from WatchChanges", len(onStream), len(watched))
		}
		for i := range onStream {
			if !proto.Equal(onStream[i], watched[i]) {
				t.Errorf("event %d differs:\nstream %v\nwatch  %v", i, onStream[i], watched[i])
			}
		}

		inboxRef := &mailbusv1.MailboxRef{Id: inbox.Id, Name: "INBOX", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX}
		keptRef := &mailbusv1.MailboxRef{Id: archive.Id, Name: "Kept", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}
		seen := map[string]bool{}
		for _, ev := range onStream {
			if ev.AccountName != "work" {
				t.Errorf("%s: account name %q, want work", events.Kind(ev), ev.AccountName)
			}
			if ev.GetMailboxCreated() != nil || ev.GetMailboxUpdated() != nil || ev.GetMailboxDeleted() != nil {
				continue
			}
			kind := events.Kind(ev)
			seen[kind] = true
			switch {
			case ev.GetMessageCreated() != nil:
				atts := ev.GetMessageCreated().Attachments
				if !proto.Equal(ev.Mailbox, inboxRef) || len(atts) != 2 || atts[0].Filename != "q1.csv" || atts[1].Filename != "Übersicht.pdf" || atts[1].PartId != "3" {
					t.Errorf("message.created: mailbox %v, attachments %v", ev.Mailbox, atts)
				}
			case ev.GetMessageUpdated().GetPreviousMailbox() != nil:
				if !proto.Equal(ev.Mailbox, &mailbusv1.MailboxRef{Id: archive.Id, Name: "Archive", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}) || !proto.Equal(ev.GetMessageUpdated().PreviousMailbox, inboxRef) {
					t.Errorf("the move: mailbox %v, previous %v", ev.Mailbox, ev.GetMessageUpdated().PreviousMailbox)
				}
			case ev.GetMessageUpdated() != nil:
				if u := ev.GetMessageUpdated(); !proto.Equal(ev.Mailbox, inboxRef) || len(u.FlagsAdded) != 1 || u.FlagsAdded[0] != `\Seen` || len(u.FlagsRemoved) != 0 {
					t.Errorf("the flag change: mailbox %v, added %q, removed %q", ev.Mailbox, u.FlagsAdded, u.FlagsRemoved)
				}
			case ev.GetMessageDeleted() != nil:
				if !proto.Equal(ev.Mailbox, keptRef) {
					t.Errorf("message.deleted after the rename: mailbox %v, want %v", ev.Mailbox, keptRef)
				}
			}
		}
		if len(seen) != 3 {
			t.Errorf("message events seen: %v, want message.created, message.updated and message.deleted", seen)
		}
	})
}
