package ingest

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/ownership"
)

// ErrStalled is wrapped by the error of a stream the watchdog cut: the
// store neither took data nor answered for Config.Timeout.
var ErrStalled = errors.New("ingest: the store neither took data nor answered in time, stream cut")

// ErrOpenMessage is returned by Send while a message is half-sent (its
// body failed) and by Finish on such a stream: only Abandon or Close can
// end it.
var ErrOpenMessage = errors.New("ingest: a message is still half-sent on the stream")

// BodyError is a failure to read a message's body (from upstream), as
// opposed to a failure of the store. The message stays half-sent: the
// stream can then only be abandoned, which drops it.
type BodyError struct{ Err error }

func (e *BodyError) Error() string { return e.Err.Error() }
func (e *BodyError) Unwrap() error { return e.Err }

// Class is what a fetcher should do after an error of the stream.
type Class int

const (
	// Retryable: the store was unreachable, overloaded, restarting or
	// stalled, or the stream was cancelled; try again later (messages
	// not acknowledged are sent again, and the store's idempotent ingest
	// makes no duplicate).
	Retryable Class = iota
	// Permanent: the same request will fail again (the account is gone,
	// the token is refused, the request is invalid); park or stop.
	Permanent
	// Fenced: the store accepted a larger fencing token for the account
	// (decision 0011): another replica works it now; stop at once.
	Fenced
)

func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Fenced:
		return "fenced"
	}
	return "unknown"
}

// Classify says coarsely what an error of the stream means. A *BodyError
// is the upstream's failure, not the store's: it is Retryable here, and
// the fetcher classifies its cause by its own rules. Neither fetcher uses
// it (decision 0042): every FailedPrecondition but STALE_LEASE, and
// AlreadyExists, are Permanent here, which would park an account on a
// stale generation (the account was updated: stop, the new configuration
// runs) or on a precondition only one operation failed.
func Classify(err error) Class {
	var be *BodyError
	switch {
	case err == nil:
		return Retryable
	case ownership.IsStaleLease(err):
		return Fenced
	case errors.As(err, &be), errors.Is(err, ErrStalled),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return Retryable
	}
	st, ok := status.FromError(err)
	if !ok {
		return Retryable
	}
	switch st.Code() {
	case codes.NotFound, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated,
		codes.FailedPrecondition, codes.Unimplemented, codes.OutOfRange, codes.AlreadyExists:
		return Permanent
	}
	return Retryable
}
