package db_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// eachBackend runs f against a fresh database of every backend.
func eachBackend(t *testing.T, f func(t *testing.T, d *db.DB)) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			f(t, b.Open(t))
		})
	}
}

var zeroTime time.Time

var device = &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_DEVICE, DeviceId: "phone"}

func imapAccount(name string) *mailbusv1.Account {
	return &mailbusv1.Account{
		Name: name, Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "imap.example.com", Port: 993,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "alice", Secret: "hunter2",
	}
}

func pop3Account(name string) *mailbusv1.Account {
	return &mailbusv1.Account{
		Name: name, Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "pop.example.com", Port: 995,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "bob", Secret: "s3cret",
	}
}

func mustCreate(t *testing.T, d *db.DB, a *mailbusv1.Account) *mailbusv1.Account {
	t.Helper()
	got, err := d.CreateAccount(context.Background(), a)
	if err != nil {
		t.Fatalf("CreateAccount: %v", err)
	}
	return got
}

// mustMailbox declares an upstream mailbox and returns it.
func mustMailbox(t *testing.T, d *db.DB, acct, name string, uidvalidity uint32) *mailbusv1.Mailbox {
	t.Helper()
	got, err := d.UpsertMailboxes(context.Background(), acct, []*mailbusv1.UpstreamMailbox{{Name: name, Delimiter: "/", Uidvalidity: uidvalidity}})
	if err != nil {
		t.Fatalf("UpsertMailboxes: %v", err)
	}
	return got[0].Mailbox
}

func rawMessage(n int) []byte {
	return []byte(fmt.Sprintf("From: Alice <alice@example.com>\r\nTo: bob@example.com\r\nSubject: message %d\r\nMessage-ID: <m%d@example.com>\r\nDate: Mon, 02 Jan 2026 15:04:05 +0000\r\n\r\nHello number %d.\r\n", n, n, n))
}

func imapItem(acct, mailbox string, uidvalidity, uid uint32, raw []byte, flags ...string) db.IngestItem {
	return db.IngestItem{Meta: &mailbusv1.IngestMeta{
		AccountId: acct, Ref: fmt.Sprint(uid), Flags: flags,
		Upstream:     &mailbusv1.UpstreamId{MailboxId: mailbox, Uidvalidity: uidvalidity, Uid: uid},
		InternalDate: timestamppb.New(time.Date(2026, 1, 1, 0, 0, int(uid), 0, time.UTC)),
	}, Raw: raw}
}

func pop3Item(acct, uidl string, raw []byte) db.IngestItem {
	return db.IngestItem{Meta: &mailbusv1.IngestMeta{AccountId: acct, Ref: uidl, Upstream: &mailbusv1.UpstreamId{Uidl: uidl}}, Raw: raw}
}

func mustIngest(t *testing.T, d *db.DB, items ...db.IngestItem) []*mailbusv1.IngestResult {
	t.Helper()
	res, _, err := d.Ingest(context.Background(), items)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	for i, r := range res {
		if r.Error != "" {
			t.Fatalf("Ingest item %d: %s", i, r.Error)
		}
	}
	return res
}

// allEvents returns every event of an account in order.
func allEvents(t *testing.T, d *db.DB, acct string) []*mailbusv1.Event {
	t.Helper()
	evs, err := d.EventsAfter(context.Background(), acct, -1, 0, 0, 1_000_000)
	if err != nil {
		t.Fatalf("EventsAfter: %v", err)
	}
	out := make([]*mailbusv1.Event, len(evs))
	for i, e := range evs {
		out[i] = e.Event
	}
	return out
}

func countKind(evs []*mailbusv1.Event, kind string) int {
	n := 0
	for _, e := range evs {
		if kindOf(e) == kind {
			n++
		}
	}
	return n
}

func kindOf(e *mailbusv1.Event) string {
	switch e.Payload.(type) {
	case *mailbusv1.Event_MessageCreated:
		return "message.created"
	case *mailbusv1.Event_MessageUpdated:
		return "message.updated"
	case *mailbusv1.Event_MessageDeleted:
		return "message.deleted"
	case *mailbusv1.Event_MailboxCreated:
		return "mailbox.created"
	case *mailbusv1.Event_MailboxUpdated:
		return "mailbox.updated"
	case *mailbusv1.Event_MailboxDeleted:
		return "mailbox.deleted"
	case *mailbusv1.Event_AccountStatus:
		return "account.status"
	case *mailbusv1.Event_WritebackFailed:
		return "writeback.failed"
	}
	return ""
}

func inboxOf(t *testing.T, d *db.DB, acct string) *mailbusv1.Mailbox {
	t.Helper()
	mbs, _, err := d.ListMailboxes(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mbs {
		if m.Role == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX {
			return m
		}
	}
	t.Fatal("no inbox")
	return nil
}
