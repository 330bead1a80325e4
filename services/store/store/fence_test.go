package store_test

import (
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestStaleLeaseOverGRPC: once a fetcher has claimed an account with a
// lease token, a write with a smaller one is refused with
// FAILED_PRECONDITION and ErrorInfo reason STALE_LEASE (what
// ownership.IsStaleLease recognises), on unary calls and on the ingest
// stream, and the refused ingest stores nothing.
func TestStaleLeaseOverGRPC(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct, err := e.accounts.CreateAccount(callCtx(t), &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
			Name: "pop", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "pop.example.com", Port: 995,
			Security: mailbusv1.Security_SECURITY_TLS, Username: "bob", Secret: "s3cret",
		}})
		if err != nil {
			t.Fatal(err)
		}
		id := acct.Account.Id
		if _, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: id, LeaseToken: 42}); err != nil {
			t.Fatalf("ClaimAccount: %v", err)
		}
		_, err = e.ingest.ReportAccountStatus(callCtx(t), &mailbusv1.ReportAccountStatusRequest{AccountId: id, LeaseToken: 41, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE}})
		checkStale(t, "ReportAccountStatus", err)
		if !ownership.IsStaleLease(err) {
			t.Fatalf("ownership.IsStaleLease(%v) = false", err)
		}

		late := pop3Item(id, "late", []byte("Subject: late\r\n\r\nx\r\n"))
		late.meta.LeaseToken = 41
		_, err = e.ingestStream(callCtx(t), []item{late})
		checkStale(t, "IngestMessages", err)
		current := pop3Item(id, "current", []byte("Subject: current\r\n\r\ny\r\n"))
		current.meta.LeaseToken = 42
		res, err := e.ingestStream(callCtx(t), []item{current})
		if err != nil || len(res) != 1 || !res[0].Created {
			t.Fatalf("ingest with the current token: %v %v", res, err)
		}
		ids, err := e.ingest.ListUpstreamIds(callCtx(t), &mailbusv1.ListUpstreamIdsRequest{AccountId: id})
		if err != nil {
			t.Fatal(err)
		}
		var uidls []string
		for {
			r, err := ids.Recv()
			if err != nil {
				break
			}
			for _, m := range r.Messages {
				uidls = append(uidls, m.Upstream.GetUidl())
			}
		}
		if len(uidls) != 1 || uidls[0] != "current" {
			t.Fatalf("stored UIDLs %v, want [current]", uidls)
		}
	})
}

func checkStale(t *testing.T, call string, err error) {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.FailedPrecondition {
		t.Fatalf("%s with a stale token: %v, want FAILED_PRECONDITION", call, err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.Reason == "STALE_LEASE" && info.Domain == "mailbus.v1" {
			return
		}
	}
	t.Fatalf("%s with a stale token: no ErrorInfo STALE_LEASE in %v", call, st.Details())
}
