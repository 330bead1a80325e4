package accountrun

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReauthorizationNeededReason is the ErrorInfo reason with which the store
// answers GetAccountSecret (gRPC FAILED_PRECONDITION) for an OAuth 2.0
// account whose refresh token the authorization server refused
// (invalid_grant): the store has parked the account with the reason and
// the command that fixes it (decision 0036).
const ReauthorizationNeededReason = "REAUTHORIZATION_NEEDED"

// IsReauthorizationNeeded reports whether err (or an error it wraps) is
// the store's answer that an account needs a new OAuth 2.0 authorization.
// A fetcher that gets it stops working the account until it is updated,
// without reporting a status of its own (the store's reason must stay)
// and without asking again.
func IsReauthorizationNeeded(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == ReauthorizationNeededReason {
			return true
		}
	}
	return false
}
