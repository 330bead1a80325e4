package accountrun

import (
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StaleGenerationReason is the ErrorInfo reason with which the store
// refuses a status report (gRPC FAILED_PRECONDITION) that names an account
// generation other than the current one: the account was updated since the
// worker got it, and a worker for the new generation takes over.
const StaleGenerationReason = "STALE_GENERATION"

// IsStaleGeneration reports whether err (or an error it wraps) is the
// store's refusal of a report of an old account generation. The worker
// that made it must not act on its outcome (park, log it as the account's
// state): the supervisor restarts it with the new generation.
func IsStaleGeneration(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == StaleGenerationReason {
			return true
		}
	}
	return false
}
