package db_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// mimePart is one body part of a test message: its header lines and its
// body as sent (already transfer-encoded).
type mimePart struct {
	header []string
	body   string
}

// multipartMessage builds a multipart message of the subtype from parts,
// each delimited by the boundary "b0undary".
func multipartMessage(subtype string, parts ...mimePart) []byte {
	var b strings.Builder
	b.WriteString("From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: parts\r\nMIME-Version: 1.0\r\n")
	fmt.Fprintf(&b, "Content-Type: multipart/%s; boundary=\"b0undary\"\r\n\r\npreamble\r\n", subtype)
	for _, p := range parts {
		b.WriteString("--b0undary\r\n")
		for _, h := range p.header {
			b.WriteString(h + "\r\n")
		}
		b.WriteString("\r\n" + p.body + "\r\n")
	}
	b.WriteString("--b0undary--\r\n")
	return []byte(b.String())
}

// The attachments of the test messages. A part's size is its body as sent
// (the encoded octets between its header and the next delimiter's line
// break).
var (
	pdfBody    = "JVBERi0xLjQKJcfsj6IKNSAwIG9iago8PC9MZW5ndGggNiAwIFI+PgpzdHJlYW0K"
	umlautBody = "UHLDvGZiZXJpY2h0IE3DpHJ6IDIwMjYK"
	pngBody    = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="

	twoAttachments = multipartMessage("mixed",
		mimePart{[]string{"Content-Type: text/plain; charset=utf-8"}, "The reports are attached."},
		mimePart{[]string{"Content-Type: application/pdf", `Content-Disposition: attachment; filename="report.pdf"`, "Content-Transfer-Encoding: base64"}, pdfBody},
		// RFC 2231: a UTF-8 file name, percent-encoded.
		mimePart{[]string{"Content-Type: application/pdf", "Content-Disposition: attachment; filename*=UTF-8''Pr%C3%BCfbericht%20M%C3%A4rz%20%E2%80%93%20%E6%8A%A5%E5%91%8A.pdf", "Content-Transfer-Encoding: base64"}, umlautBody},
	)
	inlineImage = multipartMessage("related",
		mimePart{[]string{"Content-Type: text/html; charset=utf-8"}, `<p>Our logo: <img src="cid:logo@example.com"></p>`},
		mimePart{[]string{"Content-Type: image/png", "Content-ID: <logo@example.com>", `Content-Disposition: inline; filename="logo.png"`, "Content-Transfer-Encoding: base64"}, pngBody},
	)
)

// attachmentCases are messages with their expected event attachment lists.
var attachmentCases = []struct {
	name string
	raw  []byte
	want []*mailbusv1.Attachment
}{
	{"two attachments, one with a non-ASCII name", twoAttachments, []*mailbusv1.Attachment{
		{PartId: "2", Filename: "report.pdf", ContentType: "application/pdf", Size: uint64(len(pdfBody))},
		{PartId: "3", Filename: "Prüfbericht März – 报告.pdf", ContentType: "application/pdf", Size: uint64(len(umlautBody))},
	}},
	{"inline image", inlineImage, []*mailbusv1.Attachment{
		{PartId: "2", Filename: "logo.png", ContentType: "image/png", Size: uint64(len(pngBody)), ContentId: "logo@example.com", Inline: true},
	}},
	{"no attachment", rawMessage(1), nil},
}

// TestEventsMessageCreatedAttachments checks that message.created lists the
// attachments of a message, with the account's name and the mailbox's name
// and role, for each way a message arrives: ingest from an IMAP server,
// ingest from a POP3 maildrop, and a device's append. The events are read
// back from the log, as the relay publishes them and WatchChanges replays
// them.
func TestEventsMessageCreatedAttachments(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		imap := mustCreate(t, d, imapAccount("work"))
		pop := mustCreate(t, d, pop3Account("home"))
		up, err := d.UpsertMailboxes(ctx, imap.Id, []*mailbusv1.UpstreamMailbox{{Name: "Projects/Reports", Delimiter: "/", Uidvalidity: 9, Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}})
		if err != nil {
			t.Fatalf("UpsertMailboxes: %v", err)
		}
		reports := up[0].Mailbox
		popInbox := inboxOf(t, d, pop.Id)
		for i, c := range attachmentCases {
			t.Run(c.name, func(t *testing.T) {
				uid := uint32(i + 1)
				imapID := mustIngest(t, d, imapItem(imap.Id, reports.Id, 9, uid, c.raw))[0].MessageId
				popID := mustIngest(t, d, pop3Item(pop.Id, fmt.Sprintf("uidl-%d", i), c.raw))[0].MessageId
				appended, err := d.AppendMessage(ctx, device, reports.Id, c.raw, nil, zeroTime)
				if err != nil {
					t.Fatalf("AppendMessage: %v", err)
				}
				for _, w := range []struct {
					how, account, messageID string
					wantAccount             string
					wantMailbox             *mailbusv1.MailboxRef
					wantOrigin              mailbusv1.OriginKind
				}{
					{"imap ingest", imap.Id, imapID, "work", &mailbusv1.MailboxRef{Id: reports.Id, Name: "Projects/Reports", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}, mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM},
					{"pop3 ingest", pop.Id, popID, "home", &mailbusv1.MailboxRef{Id: popInbox.Id, Name: "INBOX", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX}, mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM},
					{"device append", imap.Id, appended.Id, "work", &mailbusv1.MailboxRef{Id: reports.Id, Name: "Projects/Reports", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}, mailbusv1.OriginKind_ORIGIN_KIND_DEVICE},
				} {
					ev := createdEvent(t, d, w.account, w.messageID)
					if ev.AccountName != w.wantAccount || ev.Origin.GetKind() != w.wantOrigin {
						t.Errorf("%s: account name %q, origin %v; want %q, %v", w.how, ev.AccountName, ev.Origin.GetKind(), w.wantAccount, w.wantOrigin)
					}
					if !proto.Equal(ev.Mailbox, w.wantMailbox) {
						t.Errorf("%s: event mailbox %v, want %v", w.how, ev.Mailbox, w.wantMailbox)
					}
					mc := ev.GetMessageCreated()
					if !sameAttachments(mc.Attachments, c.want) {
						t.Errorf("%s: attachments\n%v\nwant\n%v", w.how, mc.Attachments, c.want)
					}
					if mc.OmittedAttachments != 0 {
						t.Errorf("%s: %d attachments omitted, want 0", w.how, mc.OmittedAttachments)
					}
				}
			})
		}
	})
}

func sameAttachments(a, b []*mailbusv1.Attachment) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !proto.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// createdEvent returns the message.created event of a message.
func createdEvent(t *testing.T, d *db.DB, account, messageID string) *mailbusv1.Event {
	t.Helper()
	var found *mailbusv1.Event
	for _, ev := range allEvents(t, d, account) {
		if ev.GetMessageCreated().GetMessage().GetId() == messageID {
			if found != nil {
				t.Fatalf("message %s: two message.created events", messageID)
			}
			found = ev
		}
	}
	if found == nil {
		t.Fatalf("message %s: no message.created event", messageID)
	}
	return found
}

// TestEventsAttachmentListBounded checks that a message.created event of a
// message with very many attachments and very long file names stays small:
// it lists the first 100, counts the rest, and cuts each name to 255 bytes
// at a character boundary.
func TestEventsAttachmentListBounded(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		acct := mustCreate(t, d, pop3Account("many"))
		longName := strings.Repeat("ü", 200) + ".txt" // 404 bytes
		parts := []mimePart{{[]string{"Content-Type: text/plain"}, "Many files."}}
		for i := range 150 {
			name := fmt.Sprintf("file-%03d.txt", i)
			if i == 0 {
				name = longName
			}
			parts = append(parts, mimePart{[]string{"Content-Type: application/octet-stream", fmt.Sprintf(`Content-Disposition: attachment; filename="%s"`, name)}, "x"})
		}
		id := mustIngest(t, d, pop3Item(acct.Id, "many", multipartMessage("mixed", parts...)))[0].MessageId
		ev := createdEvent(t, d, acct.Id, id)
		mc := ev.GetMessageCreated()
		if len(mc.Attachments) != 100 || mc.OmittedAttachments != 50 {
			t.Fatalf("%d attachments listed, %d omitted; want 100 and 50", len(mc.Attachments), mc.OmittedAttachments)
		}
		first := mc.Attachments[0].Filename
		if len(first) > 255 || !utf8.ValidString(first) || !strings.HasPrefix(longName, first) || len(first) < 254 {
			t.Errorf("long name cut to %d bytes %q: want a valid UTF-8 prefix of at most 255 bytes", len(first), first)
		}
		if last := mc.Attachments[99]; last.Filename != "file-099.txt" || last.PartId != "101" {
			t.Errorf("last listed attachment %v, want file-099.txt at part 101", last)
		}
		if n := proto.Size(ev); n > 64<<10 {
			t.Errorf("event is %d bytes, want it well under NATS's 1 MiB", n)
		}
	})
}

// TestEventsFlagDeltas checks that message.updated names the flags a change
// added and removed, for a device's change and for one seen upstream, with
// the account's and the mailbox's names.
func TestEventsFlagDeltas(t *testing.T) {
	cases := []struct {
		name          string
		initial       []string
		device        bool
		add, remove   []string // device change
		upstream      []string // upstream: the server's new flag set
		wantAdded     []string
		wantRemoved   []string
		wantNoChanges bool
	}{
		{name: "device adds", initial: []string{`\Seen`}, device: true, add: []string{`\Flagged`, `$Label1`}, wantAdded: []string{`$Label1`, `\Flagged`}},
		{name: "device removes", initial: []string{`\Seen`, `\Flagged`}, device: true, remove: []string{`\Seen`}, wantRemoved: []string{`\Seen`}},
		{name: "device adds and removes, one already set", initial: []string{`\Seen`, `\Answered`}, device: true, add: []string{`\Seen`, `\Flagged`}, remove: []string{`\Answered`, `\Draft`}, wantAdded: []string{`\Flagged`}, wantRemoved: []string{`\Answered`}},
		{name: "device change that changes nothing", initial: []string{`\Seen`}, device: true, add: []string{`\Seen`}, wantNoChanges: true},
		{name: "upstream adds and removes", initial: []string{`\Seen`, `$Forwarded`}, upstream: []string{`\Seen`, `\Flagged`, `\Answered`}, wantAdded: []string{`\Answered`, `\Flagged`}, wantRemoved: []string{`$Forwarded`}},
		{name: "upstream removes all", initial: []string{`\Seen`, `\Flagged`}, upstream: []string{}, wantRemoved: []string{`\Flagged`, `\Seen`}},
	}
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		acct := mustCreate(t, d, imapAccount("flags"))
		box := mustMailbox(t, d, acct.Id, "Lists/Go", 3)
		for i, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				uid := uint32(i + 1)
				id := mustIngest(t, d, imapItem(acct.Id, box.Id, 3, uid, rawMessage(i), c.initial...))[0].MessageId
				before := len(allEvents(t, d, acct.Id))
				if c.device {
					if _, _, err := d.UpdateFlags(ctx, device, acct.Id, []string{id}, c.add, c.remove); err != nil {
						t.Fatalf("UpdateFlags: %v", err)
					}
				} else {
					ch := &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{
						Upstream: &mailbusv1.UpstreamId{MailboxId: box.Id, Uidvalidity: 3, Uid: uid}, Flags: c.upstream,
					}}}
					if _, _, _, err := d.ApplyUpstreamChanges(ctx, acct.Id, []*mailbusv1.UpstreamChange{ch}); err != nil {
						t.Fatalf("ApplyUpstreamChanges: %v", err)
					}
				}
				evs := allEvents(t, d, acct.Id)[before:]
				if c.wantNoChanges {
					if len(evs) != 0 {
						t.Fatalf("%d events for a change that changes nothing: %v", len(evs), evs)
					}
					return
				}
				if len(evs) != 1 || evs[0].GetMessageUpdated() == nil {
					t.Fatalf("events %v, want one message.updated", evs)
				}
				ev := evs[0]
				u := ev.GetMessageUpdated()
				if !sameStrings(u.FlagsAdded, c.wantAdded) || !sameStrings(u.FlagsRemoved, c.wantRemoved) {
					t.Errorf("added %q, removed %q; want %q, %q", u.FlagsAdded, u.FlagsRemoved, c.wantAdded, c.wantRemoved)
				}
				wantBox := &mailbusv1.MailboxRef{Id: box.Id, Name: "Lists/Go"}
				if ev.AccountName != "flags" || !proto.Equal(ev.Mailbox, wantBox) || u.PreviousMailbox != nil {
					t.Errorf("account name %q, mailbox %v, previous mailbox %v; want %q, %v, none", ev.AccountName, ev.Mailbox, u.PreviousMailbox, "flags", wantBox)
				}
			})
		}
	})
}

func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestEventsMailboxNames checks the mailbox that message.* and mailbox.*
// events name across renames, moves and deletions, by a device and
// upstream: a rename shows the new name (on the mailbox, its children, and
// the messages changed after it, also later in the same transaction), a
// move names both mailboxes, and a deletion names the mailbox as it was.
func TestEventsMailboxNames(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		acct := mustCreate(t, d, imapAccount("names"))
		up, err := d.UpsertMailboxes(ctx, acct.Id, []*mailbusv1.UpstreamMailbox{
			{Name: "Work", Delimiter: "/", Uidvalidity: 1},
			{Name: "Work/2026", Delimiter: "/", Uidvalidity: 2},
			{Name: "Trash", Delimiter: "/", Uidvalidity: 3, Role: mailbusv1.MailboxRole_MAILBOX_ROLE_TRASH},
		})
		if err != nil {
			t.Fatalf("UpsertMailboxes: %v", err)
		}
		work, child, trash := up[0].Mailbox, up[1].Mailbox, up[2].Mailbox
		ref := func(mb *mailbusv1.Mailbox, name string) *mailbusv1.MailboxRef {
			return &mailbusv1.MailboxRef{Id: mb.Id, Name: name, Role: mb.Role}
		}
		m1 := mustIngest(t, d, imapItem(acct.Id, work.Id, 1, 1, rawMessage(1)))[0].MessageId
		m2 := mustIngest(t, d, imapItem(acct.Id, work.Id, 1, 2, rawMessage(2)))[0].MessageId
		m3 := mustIngest(t, d, imapItem(acct.Id, child.Id, 2, 1, rawMessage(3)))[0].MessageId
		flags := func(mailbox string, uidvalidity, uid uint32, f ...string) *mailbusv1.UpstreamChange {
			return &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{
				Upstream: &mailbusv1.UpstreamId{MailboxId: mailbox, Uidvalidity: uidvalidity, Uid: uid}, Flags: f,
			}}}
		}
		type want struct {
			kind    string
			object  string // message or mailbox id
			mailbox *mailbusv1.MailboxRef
			// previous: the previous mailbox of a move, or the previous
			// name of a mailbox rename.
			previous any
		}
		steps := []struct {
			name   string
			change func() error
			want   []want
		}{
			{
				name: "device renames a mailbox with a child",
				change: func() error {
					_, err := d.RenameMailbox(ctx, device, work.Id, "Jobs")
					return err
				},
				want: []want{
					{"mailbox.updated", work.Id, ref(work, "Jobs"), "Work"},
					{"mailbox.updated", child.Id, ref(child, "Jobs/2026"), "Work/2026"},
				},
			},
			{
				name: "a device's flag change after the rename",
				change: func() error {
					_, _, err := d.UpdateFlags(ctx, device, acct.Id, []string{m3}, []string{`\Seen`}, nil)
					return err
				},
				want: []want{{"message.updated", m3, ref(child, "Jobs/2026"), nil}},
			},
			{
				// The first flag change reads the mailbox's name before
				// the rename; the second, in the same transaction after
				// it, must not reuse it.
				name: "upstream: flags, a rename, flags again, in one transaction",
				change: func() error {
					_, _, _, err := d.ApplyUpstreamChanges(ctx, acct.Id, []*mailbusv1.UpstreamChange{
						flags(work.Id, 1, 1, `\Seen`),
						{Change: &mailbusv1.UpstreamChange_MailboxRename{MailboxRename: &mailbusv1.UpstreamMailboxRename{MailboxId: work.Id, NewName: "Projects"}}},
						flags(work.Id, 1, 2, `\Flagged`),
					})
					return err
				},
				want: []want{
					{"message.updated", m1, ref(work, "Jobs"), nil},
					{"mailbox.updated", work.Id, ref(work, "Projects"), "Jobs"},
					{"mailbox.updated", child.Id, ref(child, "Projects/2026"), "Jobs/2026"},
					{"message.updated", m2, ref(work, "Projects"), nil},
				},
			},
			{
				name: "device moves a message to the trash",
				change: func() error {
					_, _, err := d.MoveMessages(ctx, device, acct.Id, []string{m1}, trash.Id)
					return err
				},
				want: []want{{"message.updated", m1, ref(trash, "Trash"), ref(work, "Projects")}},
			},
			{
				name: "device deletes a message",
				change: func() error {
					_, err := d.DeleteMessages(ctx, device, acct.Id, []string{m1})
					return err
				},
				want: []want{{"message.deleted", m1, ref(trash, "Trash"), nil}},
			},
			{
				name: "upstream deletes a mailbox with a message",
				change: func() error {
					_, _, _, err := d.ApplyUpstreamChanges(ctx, acct.Id, []*mailbusv1.UpstreamChange{
						{Change: &mailbusv1.UpstreamChange_MailboxDelete{MailboxDelete: &mailbusv1.UpstreamMailboxDelete{MailboxId: child.Id}}},
					})
					return err
				},
				want: []want{
					{"message.deleted", m3, ref(child, "Projects/2026"), nil},
					{"mailbox.deleted", child.Id, ref(child, "Projects/2026"), nil},
				},
			},
			{
				name: "device creates a mailbox",
				change: func() error {
					_, err := d.CreateMailbox(ctx, device, acct.Id, "Receipts")
					return err
				},
				want: []want{{"mailbox.created", "", &mailbusv1.MailboxRef{Name: "Receipts"}, nil}},
			},
			{
				name: "upstream gives a mailbox a role",
				change: func() error {
					_, err := d.UpsertMailboxes(ctx, acct.Id, []*mailbusv1.UpstreamMailbox{{Name: "Projects", Delimiter: "/", Uidvalidity: 1, Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}})
					return err
				},
				want: []want{{"mailbox.updated", work.Id, &mailbusv1.MailboxRef{Id: work.Id, Name: "Projects", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}, nil}},
			},
			{
				name: "a message change after the role change",
				change: func() error {
					_, _, err := d.UpdateFlags(ctx, device, acct.Id, []string{m2}, []string{`$Done`}, nil)
					return err
				},
				want: []want{{"message.updated", m2, &mailbusv1.MailboxRef{Id: work.Id, Name: "Projects", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}, nil}},
			},
		}
		for _, s := range steps {
			before := len(allEvents(t, d, acct.Id))
			if err := s.change(); err != nil {
				t.Fatalf("%s: %v", s.name, err)
			}
			got := allEvents(t, d, acct.Id)[before:]
			if len(got) != len(s.want) {
				t.Fatalf("%s: %d events %v, want %d", s.name, len(got), got, len(s.want))
			}
			for i, w := range s.want {
				checkNamedEvent(t, fmt.Sprintf("%s: event %d", s.name, i), got[i], w.kind, w.object, w.mailbox, w.previous)
			}
		}
	})
}

// checkNamedEvent checks the kind, object, account name and mailbox of an
// event of TestEventsMailboxNames. previous is a *MailboxRef (the mailbox
// a message was moved from), a string (the name before a mailbox rename),
// or nil. A want mailbox without an id matches any id.
func checkNamedEvent(t *testing.T, what string, ev *mailbusv1.Event, kind, object string, mailbox *mailbusv1.MailboxRef, previous any) {
	t.Helper()
	if k := kindOf(ev); k != kind {
		t.Errorf("%s: kind %s, want %s", what, k, kind)
		return
	}
	if ev.AccountName != "names" {
		t.Errorf("%s: account name %q, want %q", what, ev.AccountName, "names")
	}
	got := proto.Clone(ev.Mailbox).(*mailbusv1.MailboxRef)
	if mailbox.Id == "" && got != nil {
		got.Id = ""
	}
	if !proto.Equal(got, mailbox) {
		t.Errorf("%s: mailbox %v, want %v", what, ev.Mailbox, mailbox)
	}
	var id string
	var prevRef *mailbusv1.MailboxRef
	var prevName string
	switch p := ev.Payload.(type) {
	case *mailbusv1.Event_MessageUpdated:
		id, prevRef = p.MessageUpdated.GetMessage().GetId(), p.MessageUpdated.PreviousMailbox
		if prevRef.GetId() != p.MessageUpdated.PreviousMailboxId {
			t.Errorf("%s: previous mailbox %v, previous_mailbox_id %q", what, prevRef, p.MessageUpdated.PreviousMailboxId)
		}
	case *mailbusv1.Event_MessageDeleted:
		id = p.MessageDeleted.MessageId
		if p.MessageDeleted.MailboxId != ev.Mailbox.GetId() {
			t.Errorf("%s: mailbox_id %q, event mailbox %v", what, p.MessageDeleted.MailboxId, ev.Mailbox)
		}
	case *mailbusv1.Event_MailboxCreated:
		id = p.MailboxCreated.GetMailbox().GetId()
		if ev.Mailbox.GetId() != id {
			t.Errorf("%s: event mailbox %v, created %s", what, ev.Mailbox, id)
		}
	case *mailbusv1.Event_MailboxUpdated:
		id, prevName = p.MailboxUpdated.GetMailbox().GetId(), p.MailboxUpdated.PreviousName
	case *mailbusv1.Event_MailboxDeleted:
		id = p.MailboxDeleted.MailboxId
	}
	if object != "" && id != object {
		t.Errorf("%s: about %s, want %s", what, id, object)
	}
	switch w := previous.(type) {
	case *mailbusv1.MailboxRef:
		if !proto.Equal(prevRef, w) {
			t.Errorf("%s: previous mailbox %v, want %v", what, prevRef, w)
		}
	case string:
		if prevName != w {
			t.Errorf("%s: previous name %q, want %q", what, prevName, w)
		}
	case nil:
		if prevRef != nil || prevName != "" {
			t.Errorf("%s: previous mailbox %v, previous name %q; want none", what, prevRef, prevName)
		}
	}
}

// TestEventsAccountName checks that every event carries the account's name
// as it is when the event is written: after a rename, also the
// account.status event of the rename's own transaction.
func TestEventsAccountName(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		acct := mustCreate(t, d, pop3Account("before"))
		mustIngest(t, d, pop3Item(acct.Id, "u1", rawMessage(1)))
		if err := d.ReportStatus(ctx, acct.Id, &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: "bad password"}); err != nil {
			t.Fatalf("ReportStatus: %v", err)
		}
		n := len(allEvents(t, d, acct.Id))
		// A parked account is un-parked by any update: an account.status
		// event in the transaction of the rename.
		if _, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: acct.Id, Name: "after"}, []string{"name"}); err != nil {
			t.Fatalf("UpdateAccount: %v", err)
		}
		mustIngest(t, d, pop3Item(acct.Id, "u2", rawMessage(2)))
		evs := allEvents(t, d, acct.Id)
		for i, ev := range evs {
			want := "before"
			if i >= n {
				want = "after"
			}
			if ev.AccountName != want {
				t.Errorf("event %d (%s): account name %q, want %q", i, kindOf(ev), ev.AccountName, want)
			}
		}
		if got := countKind(evs[n:], "account.status") + countKind(evs[n:], "message.created"); got != 2 {
			t.Fatalf("after the rename: %d events %v, want an account.status and a message.created", len(evs)-n, evs[n:])
		}
	})
}
