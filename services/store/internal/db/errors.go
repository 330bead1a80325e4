package db

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound means the account, mailbox, message or write-back does not
	// exist (or belongs to another account).
	ErrNotFound = errors.New("not found")
	// ErrInvalid means the input is not acceptable.
	ErrInvalid = errors.New("invalid argument")
	// ErrConflict means the change clashes with existing data, such as a
	// name already in use.
	ErrConflict = errors.New("already exists")
	// ErrPrecondition means the operation is not possible in the current
	// state, such as appending to a POP3 account.
	ErrPrecondition = errors.New("failed precondition")
	// ErrCannotCalculateChanges means the requested state is older than the
	// kept change log (or newer than the account's state).
	ErrCannotCalculateChanges = errors.New("cannot calculate changes")
	// ErrTooLarge means a message exceeds the configured size limit.
	ErrTooLarge = errors.New("message too large")
)

// FieldError is an ErrInvalid that names the offending field.
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

func notFound(what, id string) error {
	return fmt.Errorf("%s %q: %w", what, id, ErrNotFound)
}
