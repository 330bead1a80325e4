package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestWatchLineUsesTheEventsNames: a line of mailbus watch names the
// account, the mailboxes and the attachments from the event itself
// (decision 34), without asking the store: the watcher here has no client,
// so a call to the store would panic.
func TestWatchLineUsesTheEventsNames(t *testing.T) {
	inbox := &mailbusv1.MailboxRef{Id: "2", Name: "INBOX", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX}
	archive := &mailbusv1.MailboxRef{Id: "5", Name: "Archiv/2026", Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}
	msg := func(mailbox string) *mailbusv1.MessageSummary {
		return &mailbusv1.MessageSummary{Id: "9", MailboxId: mailbox, HasAttachments: true, Envelope: &mailbusv1.Envelope{Subject: "Q1"}}
	}
	for _, c := range []struct {
		name string
		ev   *mailbusv1.Event
		want []string
	}{
		{"message.created with attachments", &mailbusv1.Event{Mailbox: inbox, Payload: &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{
			Message: msg("2"),
			Attachments: []*mailbusv1.Attachment{
				{PartId: "2", Filename: "report.pdf"}, {PartId: "3", Filename: "logo.png", Inline: true},
				{PartId: "4", Filename: "Übersicht.pdf"}, {PartId: "5", Filename: "a.csv"}, {PartId: "6", Filename: "b.csv"},
			},
			OmittedAttachments: 2,
		}}}, []string{"work ", "#9 in INBOX", "(attachments: report.pdf, Übersicht.pdf, a.csv and 3 more)"}},
		{"a move", &mailbusv1.Event{Mailbox: archive, Payload: &mailbusv1.Event_MessageUpdated{MessageUpdated: &mailbusv1.MessageUpdated{
			Message: msg("5"), PreviousMailboxId: "2", PreviousMailbox: inbox,
		}}}, []string{"work ", "moved INBOX -> Archiv/2026"}},
		{"message.deleted", &mailbusv1.Event{Mailbox: archive, Payload: &mailbusv1.Event_MessageDeleted{MessageDeleted: &mailbusv1.MessageDeleted{
			MessageId: "9", MailboxId: "5",
		}}}, []string{"work ", "#9 from Archiv/2026"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			w := newWatcher(&app{}, nil, &out, false)
			c.ev.AccountId, c.ev.AccountName = "1", "work"
			w.printEvent(context.Background(), c.ev)
			for _, want := range c.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("line %q lacks %q", out.String(), want)
				}
			}
		})
	}
}
