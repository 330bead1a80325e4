package events

import "testing"

func TestSubjectKind(t *testing.T) {
	for _, tc := range []struct{ subject, want string }{
		{"mailbus.events.acc1.message.created", KindMessageCreated},
		{"mailbus.events.acc1.writeback.failed", KindWriteBackFailed},
		{"relaytest.x1.acc1.mailbox.deleted", KindMailboxDeleted},
		{"mailbus.events.acc1.message.exploded", ""},
		{"message.created", ""},
		{"", ""},
	} {
		if got := SubjectKind(tc.subject); got != tc.want {
			t.Errorf("SubjectKind(%q) = %q, want %q", tc.subject, got, tc.want)
		}
	}
	for _, k := range Kinds() {
		if got := SubjectKind(AccountSubjects("a")[:len(AccountSubjects("a"))-1] + k); got != k {
			t.Errorf("SubjectKind of a %s subject = %q", k, got)
		}
	}
}

func TestHeader(t *testing.T) {
	h := Header(KindMessageUpdated)
	if h.Get(HeaderContentType) != "application/protobuf" || h.Get(HeaderKind) != KindMessageUpdated {
		t.Errorf("Header = %v", h)
	}
	if h := Header(""); h.Get(HeaderContentType) != "application/protobuf" || len(h.Values(HeaderKind)) != 0 {
		t.Errorf("Header(\"\") = %v", h)
	}
}
