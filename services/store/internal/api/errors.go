package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/services/store/internal/db"
)

// ErrorDomain is the domain of the ErrorInfo details the store sends.
const ErrorDomain = "mailbus.v1"

// ReasonCannotCalculateChanges is the ErrorInfo reason of a state too old
// for delta sync.
const ReasonCannotCalculateChanges = "CANNOT_CALCULATE_CHANGES"

// ReasonStaleLease is the ErrorInfo reason of a fetcher write refused
// because another replica has taken the account over (a larger lease token
// was accepted; decision 0011). The fetcher must stop working the account.
const ReasonStaleLease = "STALE_LEASE"

// ReasonStaleGeneration is the ErrorInfo reason of a status report refused
// because it names an account generation other than the current one: the
// account was updated since the fetcher read it. The fetcher's worker for
// that generation is about to be replaced.
const ReasonStaleGeneration = "STALE_GENERATION"

// ReasonReauthorizationNeeded is the ErrorInfo reason of GetAccountSecret
// for an OAuth 2.0 account whose refresh token the authorization server
// refused (invalid_grant): the store has parked the account until it is
// updated with new credentials. A fetcher parks it too and stops.
const ReasonReauthorizationNeeded = "REAUTHORIZATION_NEEDED"

// toStatus maps an error to a gRPC status. Unexpected errors are logged and
// reported as INTERNAL without their detail.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *db.FieldError
	switch {
	case errors.As(err, &fe):
		st := status.New(codes.InvalidArgument, err.Error())
		if d, derr := st.WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: fe.Field, Description: fe.Reason}}}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, db.ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, db.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, db.ErrConflict):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, db.ErrStaleLease):
		st := status.New(codes.FailedPrecondition, err.Error()+": another replica works the account now")
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonStaleLease, Domain: ErrorDomain}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, db.ErrStaleGeneration):
		st := status.New(codes.FailedPrecondition, err.Error()+": the account was updated; not recorded")
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonStaleGeneration, Domain: ErrorDomain}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, db.ErrReauthorization):
		st := status.New(codes.FailedPrecondition, err.Error()+": the OAuth server refused the account's OAuth credentials; the account is parked until it is updated (its status says why)")
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonReauthorizationNeeded, Domain: ErrorDomain}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, db.ErrTokenEndpoint):
		// The error names the endpoint and what went wrong, never a token.
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, db.ErrPrecondition):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, db.ErrTooLarge):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, db.ErrCannotCalculateChanges):
		st := status.New(codes.OutOfRange, err.Error()+": resync the account")
		if d, derr := st.WithDetails(&errdetails.ErrorInfo{Reason: ReasonCannotCalculateChanges, Domain: ErrorDomain}); derr == nil {
			st = d
		}
		return st.Err()
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	log.ErrorContext(ctx, "request failed", "err", err)
	return status.Error(codes.Internal, "internal error; the store's log has the detail")
}

func invalidArg(field, format string, args ...any) error {
	return toStatus(context.Background(), nil, &db.FieldError{Field: field, Reason: fmt.Sprintf(format, args...)})
}
