package ownership

import (
	"context"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StaleLeaseReason is the ErrorInfo reason with which the store refuses a
// write whose fencing token is smaller than one it has accepted for the
// account (gRPC FAILED_PRECONDITION; decision 0011).
const StaleLeaseReason = "STALE_LEASE"

// TokenFromContext returns the fencing token of the lease ctx runs under
// (FromContext(ctx).Token()), or 0 when ctx carries no lease: a worker
// not run by Wrap (a process without ownership) sends token 0.
func TokenFromContext(ctx context.Context) uint64 {
	if l := FromContext(ctx); l != nil {
		return l.Token()
	}
	return 0
}

// IsStaleLease reports whether err (or an error it wraps) is the store's
// refusal of a stale fencing token: another replica has taken the account
// over, and the worker must stop working it.
func IsStaleLease(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == StaleLeaseReason {
			return true
		}
	}
	return false
}
