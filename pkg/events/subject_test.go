package events

import (
	"errors"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func TestKind(t *testing.T) {
	tests := []struct {
		name  string
		event *mailbusv1.Event
		want  string
	}{
		{"nil event", nil, ""},
		{"no payload", &mailbusv1.Event{Id: "e1", AccountId: "a1"}, ""},
		{"message created", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageCreated{}}, "message.created"},
		{"message updated", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageUpdated{}}, "message.updated"},
		{"message deleted", &mailbusv1.Event{Payload: &mailbusv1.Event_MessageDeleted{}}, "message.deleted"},
		{"mailbox created", &mailbusv1.Event{Payload: &mailbusv1.Event_MailboxCreated{}}, "mailbox.created"},
		{"mailbox updated", &mailbusv1.Event{Payload: &mailbusv1.Event_MailboxUpdated{}}, "mailbox.updated"},
		{"mailbox deleted", &mailbusv1.Event{Payload: &mailbusv1.Event_MailboxDeleted{}}, "mailbox.deleted"},
		{"account status", &mailbusv1.Event{Payload: &mailbusv1.Event_AccountStatus{}}, "account.status"},
		{"writeback failed", &mailbusv1.Event{Payload: &mailbusv1.Event_WritebackFailed{}}, "writeback.failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Kind(tt.event); got != tt.want {
				t.Errorf("Kind() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestKindsCoverOneof(t *testing.T) {
	// Every field of the payload oneof must have a kind, and Kinds must list
	// each kind once; a new payload field without a kind fails here.
	oneof := (&mailbusv1.Event{}).ProtoReflect().Descriptor().Oneofs().ByName("payload")
	if oneof == nil {
		t.Fatal("Event has no oneof payload")
	}
	if got, want := len(Kinds()), oneof.Fields().Len(); got != want {
		t.Fatalf("len(Kinds()) = %d, payload fields = %d", got, want)
	}
	seen := map[string]bool{}
	for _, k := range Kinds() {
		if seen[k] {
			t.Errorf("kind %q listed twice", k)
		}
		seen[k] = true
	}
}

func TestSubject(t *testing.T) {
	created := &mailbusv1.Event_MessageCreated{}
	tests := []struct {
		name    string
		event   *mailbusv1.Event
		want    string
		wantErr error
	}{
		{"message created", &mailbusv1.Event{AccountId: "acc1", Payload: created}, "mailbus.events.acc1.message.created", nil},
		{"uuid account", &mailbusv1.Event{AccountId: "0190f6a2-7c1e-7d3b-9a55-3f2b1c0d4e5f", Payload: &mailbusv1.Event_AccountStatus{}},
			"mailbus.events.0190f6a2-7c1e-7d3b-9a55-3f2b1c0d4e5f.account.status", nil},
		{"writeback failed", &mailbusv1.Event{AccountId: "A_b-9", Payload: &mailbusv1.Event_WritebackFailed{}}, "mailbus.events.A_b-9.writeback.failed", nil},
		{"non-ascii account", &mailbusv1.Event{AccountId: "bjørn", Payload: created}, "mailbus.events.bjørn.message.created", nil},
		{"nil event", nil, "", ErrInvalidAccountID},
		{"empty account", &mailbusv1.Event{Payload: created}, "", ErrInvalidAccountID},
		{"dot", &mailbusv1.Event{AccountId: "a.b", Payload: created}, "", ErrInvalidAccountID},
		{"star", &mailbusv1.Event{AccountId: "*", Payload: created}, "", ErrInvalidAccountID},
		{"star inside", &mailbusv1.Event{AccountId: "a*b", Payload: created}, "", ErrInvalidAccountID},
		{"gt", &mailbusv1.Event{AccountId: ">", Payload: created}, "", ErrInvalidAccountID},
		{"space", &mailbusv1.Event{AccountId: "a b", Payload: created}, "", ErrInvalidAccountID},
		{"tab", &mailbusv1.Event{AccountId: "a\tb", Payload: created}, "", ErrInvalidAccountID},
		{"newline", &mailbusv1.Event{AccountId: "a\r\n", Payload: created}, "", ErrInvalidAccountID},
		{"no-break space", &mailbusv1.Event{AccountId: "a\u00a0b", Payload: created}, "", ErrInvalidAccountID},
		{"control", &mailbusv1.Event{AccountId: "a\x00b", Payload: created}, "", ErrInvalidAccountID},
		{"invalid utf-8", &mailbusv1.Event{AccountId: "a\xffb", Payload: created}, "", ErrInvalidAccountID},
		{"no payload", &mailbusv1.Event{Id: "e1", AccountId: "acc1"}, "", ErrNoKind},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Subject(tt.event)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Subject() error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Subject() error = %v", err)
			}
			if got != tt.want {
				t.Errorf("Subject() = %q, want %q", got, tt.want)
			}
			acc, kind, err := ParseSubject(got)
			if err != nil || acc != tt.event.GetAccountId() || kind != Kind(tt.event) {
				t.Errorf("ParseSubject(%q) = %q, %q, %v", got, acc, kind, err)
			}
		})
	}
}

func TestAccountSubjects(t *testing.T) {
	if got, want := AccountSubjects("acc1"), "mailbus.events.acc1.>"; got != want {
		t.Errorf("AccountSubjects() = %q, want %q", got, want)
	}
}

func TestParseSubjectRejects(t *testing.T) {
	for _, s := range []string{
		"", "mailbus.events", "mailbus.events.", "mailbus.events.acc1",
		"mailbus.events.acc1.message", "mailbus.events.acc1.message.exploded",
		"mailbus.events..message.created", "other.events.acc1.message.created",
		"mailbus.events.*.message.created",
	} {
		if _, _, err := ParseSubject(s); !errors.Is(err, ErrInvalidSubject) {
			t.Errorf("ParseSubject(%q) error = %v, want ErrInvalidSubject", s, err)
		}
	}
}

func TestMarshalRoundTrip(t *testing.T) {
	in := &mailbusv1.Event{
		Id: "e1", AccountId: "acc1", State: 42,
		Payload: &mailbusv1.Event_MessageDeleted{MessageDeleted: &mailbusv1.MessageDeleted{MessageId: "m1", MailboxId: "b1"}},
	}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if out.GetId() != "e1" || out.GetState() != 42 || out.GetMessageDeleted().GetMessageId() != "m1" || Kind(out) != KindMessageDeleted {
		t.Errorf("round trip = %v", out)
	}
	if _, err := Unmarshal([]byte{0xff, 0xff}); err == nil {
		t.Error("Unmarshal(garbage) succeeded")
	}
}
