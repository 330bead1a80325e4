package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// hostile is text from outside the operator's reach (a sender's Subject
// or From name, a server's error, an upstream folder name) that would
// retitle the terminal and clear the screen if written raw.
const hostile = "x\x1b]0;pwned\x07\x1b[2J\u009by"

// TestOutputEscapesControlCharacters: what the CLI shows from mail, from
// servers and from the store goes to the terminal with its control
// characters escaped, in tables (message list), in the lines of mailbus
// watch and in account show's status reason.
func TestOutputEscapesControlCharacters(t *testing.T) {
	for _, c := range []struct {
		name  string
		write func(out *bytes.Buffer)
	}{
		{"table", func(out *bytes.Buffer) {
			tb := newTable(out, "FROM", "SUBJECT")
			tb.row(hostile, hostile)
			if err := tb.flush(); err != nil {
				t.Fatal(err)
			}
		}},
		{"watch, a new message", func(out *bytes.Buffer) {
			w := newWatcher(&app{}, nil, out, false)
			w.printEvent(context.Background(), &mailbusv1.Event{AccountId: "1", Payload: &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{
				Message: &mailbusv1.MessageSummary{Id: "7", Envelope: &mailbusv1.Envelope{Subject: hostile, From: []*mailbusv1.Address{{Name: hostile, Email: "a@example.com"}}}},
			}}})
		}},
		{"watch, a status", func(out *bytes.Buffer) {
			w := newWatcher(&app{}, nil, out, false)
			w.printEvent(context.Background(), &mailbusv1.Event{AccountId: "1", Payload: &mailbusv1.Event_AccountStatus{AccountStatus: &mailbusv1.AccountStatusChanged{
				Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_RETRYING, Reason: "pop3: PASS: -ERR " + hostile},
			}}})
		}},
		{"watch, a mailbox", func(out *bytes.Buffer) {
			w := newWatcher(&app{}, nil, out, false)
			w.printEvent(context.Background(), &mailbusv1.Event{AccountId: "1", Payload: &mailbusv1.Event_MailboxCreated{MailboxCreated: &mailbusv1.MailboxCreated{
				Mailbox: &mailbusv1.Mailbox{Id: "3", Name: hostile},
			}}})
		}},
		{"account show", func(out *bytes.Buffer) {
			a := &app{io: IO{Out: out}}
			a.printAccount(&mailbusv1.Account{Id: "3", Name: "work", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "pop.example.com", Port: 995,
				Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: "pop3: PASS: -ERR " + hostile}})
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			c.write(&out)
			got := out.String()
			if strings.ContainsAny(got, "\x1b\x07\u009b") {
				t.Errorf("raw control characters in %q", got)
			}
			if !strings.Contains(got, `\x1b`) {
				t.Errorf("the escaped text is missing from %q", got)
			}
		})
	}
}
