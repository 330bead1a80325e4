package accountrun_test

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/accountrun"
)

func withReason(code codes.Code, reason string) error {
	st, err := status.New(code, "refused").WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: "mailbus"})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

func TestIsReauthorizationNeeded(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"the store's answer", withReason(codes.FailedPrecondition, accountrun.ReauthorizationNeededReason), true},
		{"wrapped", fmt.Errorf("imapsync: account secret: %w", withReason(codes.FailedPrecondition, accountrun.ReauthorizationNeededReason)), true},
		{"another reason", withReason(codes.FailedPrecondition, accountrun.StaleGenerationReason), false},
		{"another code", withReason(codes.Unavailable, accountrun.ReauthorizationNeededReason), false},
		{"no details", status.Error(codes.FailedPrecondition, "re-authorization needed"), false},
		{"not a status", errors.New("REAUTHORIZATION_NEEDED"), false},
		{"nil", nil, false},
	} {
		if got := accountrun.IsReauthorizationNeeded(tt.err); got != tt.want {
			t.Errorf("%s: IsReauthorizationNeeded = %v, want %v", tt.name, got, tt.want)
		}
	}
}
