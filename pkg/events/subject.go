package events

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

const (
	// StreamName is the JetStream stream that holds every event.
	StreamName = "MAILBUS_EVENTS"
	// SubjectPrefix begins the subject of every event.
	SubjectPrefix = "mailbus.events"
	// AllSubjects matches the subject of every event; it is the stream's
	// subject filter.
	AllSubjects = SubjectPrefix + ".>"
)

// The kinds of event, the last part of an event's subject. Each names one
// field of the oneof payload of mailbusv1.Event.
const (
	KindMessageCreated  = "message.created"
	KindMessageUpdated  = "message.updated"
	KindMessageDeleted  = "message.deleted"
	KindMailboxCreated  = "mailbox.created"
	KindMailboxUpdated  = "mailbox.updated"
	KindMailboxDeleted  = "mailbox.deleted"
	KindAccountStatus   = "account.status"
	KindWriteBackFailed = "writeback.failed"
)

var (
	// ErrNoKind is returned for an event without a (known) payload.
	ErrNoKind = errors.New("event has no payload")
	// ErrInvalidAccountID is returned for an account id that cannot be one
	// token of a NATS subject.
	ErrInvalidAccountID = errors.New("invalid account id")
	// ErrInvalidSubject is returned by ParseSubject for a subject that is
	// not the subject of an event.
	ErrInvalidSubject = errors.New("not an event subject")
)

// Kind returns the kind of e, such as "message.created", from its payload,
// or "" when e is nil or has no payload.
func Kind(e *mailbusv1.Event) string {
	switch e.GetPayload().(type) {
	case *mailbusv1.Event_MessageCreated:
		return KindMessageCreated
	case *mailbusv1.Event_MessageUpdated:
		return KindMessageUpdated
	case *mailbusv1.Event_MessageDeleted:
		return KindMessageDeleted
	case *mailbusv1.Event_MailboxCreated:
		return KindMailboxCreated
	case *mailbusv1.Event_MailboxUpdated:
		return KindMailboxUpdated
	case *mailbusv1.Event_MailboxDeleted:
		return KindMailboxDeleted
	case *mailbusv1.Event_AccountStatus:
		return KindAccountStatus
	case *mailbusv1.Event_WritebackFailed:
		return KindWriteBackFailed
	default:
		return ""
	}
}

// Kinds returns every kind, in the order of the payload fields.
func Kinds() []string {
	return []string{
		KindMessageCreated, KindMessageUpdated, KindMessageDeleted,
		KindMailboxCreated, KindMailboxUpdated, KindMailboxDeleted,
		KindAccountStatus, KindWriteBackFailed,
	}
}

// Subject returns the subject of e, "mailbus.events.<account_id>.<kind>".
// It fails with ErrInvalidAccountID when the account id cannot be a single
// subject token, and with ErrNoKind when e has no payload.
func Subject(e *mailbusv1.Event) (string, error) {
	if err := ValidateAccountID(e.GetAccountId()); err != nil {
		return "", err
	}
	kind := Kind(e)
	if kind == "" {
		return "", fmt.Errorf("events: subject of event %q: %w", e.GetId(), ErrNoKind)
	}
	return SubjectPrefix + "." + e.GetAccountId() + "." + kind, nil
}

// AccountSubjects returns the subject filter that matches every event of one
// account, "mailbus.events.<account_id>.>". The id is not checked: validate
// ids that come from outside with ValidateAccountID first.
func AccountSubjects(accountID string) string {
	return SubjectPrefix + "." + accountID + ".>"
}

// ValidateAccountID reports whether id can be used as one token of a NATS
// subject: non-empty, valid UTF-8, and without '.', '*', '>', white space or
// control characters. The error wraps ErrInvalidAccountID.
func ValidateAccountID(id string) error {
	if id == "" {
		return fmt.Errorf("events: empty account id: %w", ErrInvalidAccountID)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("events: account id %q is not UTF-8: %w", id, ErrInvalidAccountID)
	}
	for _, r := range id {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("events: account id %q contains %q: %w", id, r, ErrInvalidAccountID)
		}
	}
	return nil
}

// ParseSubject splits the subject of an event into its account id and kind.
// It fails with ErrInvalidSubject for any other subject, including one with
// an unknown kind.
func ParseSubject(subject string) (accountID, kind string, err error) {
	rest, ok := strings.CutPrefix(subject, SubjectPrefix+".")
	if !ok {
		return "", "", fmt.Errorf("events: subject %q: %w", subject, ErrInvalidSubject)
	}
	accountID, kind, ok = strings.Cut(rest, ".")
	if !ok || ValidateAccountID(accountID) != nil {
		return "", "", fmt.Errorf("events: subject %q: %w", subject, ErrInvalidSubject)
	}
	for _, k := range Kinds() {
		if k == kind {
			return accountID, kind, nil
		}
	}
	return "", "", fmt.Errorf("events: subject %q: unknown kind %q: %w", subject, kind, ErrInvalidSubject)
}
