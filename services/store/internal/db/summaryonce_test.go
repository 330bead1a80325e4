package db_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// TestCreatedEventSummaryIsStored: the summary a message.created event
// carries is the stored one (the event is written from the summary
// marshalled for the row, issue 11): it decodes equal to
// GetMessageSummary's, envelope, preview and attachment flag included, for
// ingested and appended messages, in the row and as a file.
func TestCreatedEventSummaryIsStored(t *testing.T) {
	withAttachment := "From: =?UTF-8?Q?J=C3=B6rg?= <jorg@example.com>\r\nTo: a@example.com, \"B\" <b@example.com>\r\nCc: c@example.com\r\n" +
		"Subject: =?UTF-8?B?w6Rwcmlj?= report\r\nMessage-ID: <r1@example.com>\r\nIn-Reply-To: <r0@example.com>\r\nDate: Tue, 03 Feb 2026 10:00:00 +0100\r\n" +
		"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the report.\r\n" +
		"--b1\r\nContent-Type: application/pdf; name=r.pdf\r\nContent-Disposition: attachment; filename=r.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"
	large := string(rawMessage(3)) + strings.Repeat("A long line of the body.\r\n", 4096) // kept as a file on SQLite
	tests := []struct {
		name, raw string
		append    bool
	}{
		{name: "plain", raw: string(rawMessage(1))},
		{name: "attachment", raw: withAttachment},
		{name: "large", raw: large},
		{name: "empty", raw: ""},
		{name: "appended", raw: withAttachment, append: true},
	}
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		inbox := inboxOf(t, d, a.Id)
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				var id string
				if tc.append {
					s, err := d.AppendMessage(ctx, device, inbox.Id, []byte(tc.raw), []string{`\Seen`}, time.Date(2026, 2, 3, 9, 0, 0, 0, time.UTC))
					if err != nil {
						t.Fatalf("AppendMessage: %v", err)
					}
					id = s.Id
				} else {
					id = mustIngest(t, d, pop3Item(a.Id, tc.name, []byte(tc.raw)))[0].MessageId
				}
				stored, err := d.GetMessageSummary(ctx, id)
				if err != nil {
					t.Fatalf("GetMessageSummary: %v", err)
				}
				if tc.raw != "" && stored.Envelope.GetSubject() == "" {
					t.Fatalf("stored summary without a subject: %v", stored)
				}
				var got *mailbusv1.MessageSummary
				for _, ev := range allEvents(t, d, a.Id) {
					if m := ev.GetMessageCreated().GetMessage(); m.GetId() == id {
						got = m
					}
				}
				if got == nil {
					t.Fatalf("no message.created event for message %s", id)
				}
				if !proto.Equal(stored, got) {
					t.Errorf("event summary differs from the stored one:\nevent  %v\nstored %v", got, stored)
				}
				if u := got.ProtoReflect().GetUnknown(); len(u) > 0 {
					t.Errorf("event summary has unknown fields %x", u)
				}
			})
		}
	})
}
