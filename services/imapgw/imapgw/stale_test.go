package imapgw

import (
	"slices"
	"testing"

	"github.com/mailbus/mailbus/pkg/imapserver"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestStaleEvents: the view may be newer than the events replayed to it
// (the stream starts from a state read before SELECT's list). Message X
// was moved out (UID 20) and back (UID 25) and flagged before the list,
// which shows it at UID 25 with state 10: the replayed events of its move
// out, of a flag change while elsewhere, of its move back and of an older
// flag change change nothing, and none of them counts as an expunge.
func TestStaleEvents(t *testing.T) {
	const inbox, other = "1", "2"
	sel := newSelected(&mailbusv1.Mailbox{Id: inbox}, []message{
		{id: "7", uid: 3, state: 4},
		{id: "9", uid: 25, state: 10, flags: []string{`\Flagged`}},
	}, false, &subscription{}, &flagSets{})
	moved := func(state uint64, to string, uid uint32, from string, prevUID uint32, flags ...string) *mailbusv1.Event {
		return &mailbusv1.Event{State: state, Payload: &mailbusv1.Event_MessageUpdated{MessageUpdated: &mailbusv1.MessageUpdated{
			Message:           &mailbusv1.MessageSummary{Id: "9", MailboxId: to, ImapUid: uid, State: state, Flags: flags},
			PreviousMailboxId: from, PreviousImapUid: prevUID,
		}}}
	}
	events := []*mailbusv1.Event{
		moved(6, other, 4, inbox, 20),      // moved out from UID 20
		moved(7, other, 4, "", 0, `\Seen`), // flagged while elsewhere
		moved(8, inbox, 25, other, 4),      // moved back in as UID 25
		moved(9, inbox, 25, "", 0),         // flags cleared (older than the list's \Flagged)
		{State: 5, Payload: &mailbusv1.Event_MessageDeleted{MessageDeleted: &mailbusv1.MessageDeleted{MessageId: "9", MailboxId: inbox, ImapUid: 20}}},
	}
	// A zero UpdateWriter fails any write: nothing may be written.
	w := &imapserver.UpdateWriter{}
	for i, ev := range events {
		if sel.expunges(ev) {
			t.Errorf("event %d counts as an expunge", i)
		}
		if err := sel.apply(ev, w); err != nil {
			t.Errorf("event %d: %v", i, err)
		}
	}
	if len(sel.msgs) != 2 || sel.msgs[1].id != "9" || sel.msgs[1].uid != 25 || !slices.Equal(sel.msgs[1].flags, []string{`\Flagged`}) {
		t.Errorf("view after the replayed events: %+v, want message 9 at UID 25 with \\Flagged", sel.msgs)
	}
}

// TestSubscriptionQueue: a session queues only the events of its selected
// mailbox, at most max of them; past that it lists the mailbox again.
func TestSubscriptionQueue(t *testing.T) {
	const inbox, other = "1", "2"
	sub := &subscription{mailbox: inbox, max: 3}
	msg := func(mailbox string) *mailbusv1.MessageSummary {
		return &mailbusv1.MessageSummary{Id: "9", MailboxId: mailbox}
	}
	for _, tc := range []struct {
		name string
		ev   *mailbusv1.Event
		want bool
	}{
		{"created here", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{Message: msg(inbox)}}}, true},
		{"created elsewhere", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{Message: msg(other)}}}, false},
		{"flags elsewhere", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageUpdated{MessageUpdated: &mailbusv1.MessageUpdated{Message: msg(other)}}}, false},
		{"moved out", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageUpdated{MessageUpdated: &mailbusv1.MessageUpdated{Message: msg(other), PreviousMailboxId: inbox}}}, true},
		{"deleted elsewhere", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageDeleted{MessageDeleted: &mailbusv1.MessageDeleted{MessageId: "9", MailboxId: other}}}, false},
		{"deleted, no mailbox named", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageDeleted{MessageDeleted: &mailbusv1.MessageDeleted{MessageId: "9"}}}, true},
		{"mailbox created", &mailbusv1.Event{Mailbox: &mailbusv1.MailboxRef{Id: other}, Payload: &mailbusv1.Event_MailboxCreated{MailboxCreated: &mailbusv1.MailboxCreated{}}}, false},
	} {
		if got := touches(tc.ev, inbox); got != tc.want {
			t.Errorf("%s: touches %v, want %v", tc.name, got, tc.want)
		}
		sub.push(tc.ev)
	}
	evs, resync := sub.take()
	if len(evs) != 3 || resync {
		t.Errorf("queued %d events (resync %v), want 3", len(evs), resync)
	}
	here := &mailbusv1.Event{Payload: &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{Message: msg(inbox)}}}
	for range 4 {
		sub.push(here)
	}
	if evs, resync := sub.take(); len(evs) != 0 || !resync {
		t.Errorf("after 4 events with room for 3: %d queued, resync %v; want none and a resync", len(evs), resync)
	}
}
