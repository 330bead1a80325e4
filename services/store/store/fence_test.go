package store_test

import (
	"fmt"
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
// stream, and the refused ingest stores nothing: on the store's port and
// on its in-process channel (the ingest client then uses it).
func TestStaleLeaseOverGRPC(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		eachTransport(t, func(t *testing.T, inProcess bool) { staleLease(t, b, inProcess) })
	})
}

func staleLease(t *testing.T, b dbtest.Backend, inProcess bool) {
	e := startStore(t, b, storeOpts{noNATS: true, inProcess: inProcess})
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

// TestEveryFetcherWriteFencedOverGRPC: each IngestService write passes its
// lease_token to the store's check: after a claim with token 100, the
// write with 99 is refused with STALE_LEASE and the write with 100 is not.
func TestEveryFetcherWriteFencedOverGRPC(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		resp, err := e.accounts.CreateAccount(callCtx(t), &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
			Name: "imap", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "imap.example.com", Port: 993,
			Security: mailbusv1.Security_SECURITY_TLS, Username: "alice", Secret: "s3cret",
		}})
		if err != nil {
			t.Fatal(err)
		}
		id := resp.Account.Id
		ups, err := e.ingest.UpsertMailboxes(callCtx(t), &mailbusv1.UpsertMailboxesRequest{AccountId: id, Mailboxes: []*mailbusv1.UpstreamMailbox{{Name: "INBOX", Delimiter: "/", Uidvalidity: 1}}})
		if err != nil {
			t.Fatal(err)
		}
		inbox := ups.Mailboxes[0].Mailbox.Id
		res, err := e.ingestStream(callCtx(t), []item{imapItem(id, inbox, 1, 5, []byte("Subject: one\r\n\r\nx\r\n"))})
		if err != nil || len(res) != 1 || res[0].MessageId == "" {
			t.Fatalf("ingest: %v %v", res, err)
		}
		msg := res[0].MessageId
		if _, err := e.mailboxes.UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{AccountId: id, MessageIds: []string{msg}, Add: []string{`\Flagged`}, DeviceId: "phone"}); err != nil {
			t.Fatal(err)
		}
		pending, err := e.ingest.ListPendingWriteBacks(callCtx(t), &mailbusv1.ListPendingWriteBacksRequest{AccountId: id})
		if err != nil || len(pending.Writebacks) != 1 {
			t.Fatalf("pending write-backs: %v %v", pending, err)
		}
		wb := pending.Writebacks[0].Id
		if _, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: id, LeaseToken: 100}); err != nil {
			t.Fatal(err)
		}
		uid := uint32(10)
		writes := []struct {
			name  string
			write func(token uint64) error
		}{
			{"ClaimAccount", func(tok uint64) error {
				_, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: id, LeaseToken: tok})
				return err
			}},
			{"ReportAccountStatus", func(tok uint64) error {
				_, err := e.ingest.ReportAccountStatus(callCtx(t), &mailbusv1.ReportAccountStatusRequest{AccountId: id, LeaseToken: tok, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE}})
				return err
			}},
			{"UpsertMailboxes", func(tok uint64) error {
				_, err := e.ingest.UpsertMailboxes(callCtx(t), &mailbusv1.UpsertMailboxesRequest{AccountId: id, LeaseToken: tok, Mailboxes: []*mailbusv1.UpstreamMailbox{{Name: "INBOX", Delimiter: "/"}}})
				return err
			}},
			{"SetMailboxSyncState", func(tok uint64) error {
				_, err := e.ingest.SetMailboxSyncState(callCtx(t), &mailbusv1.SetMailboxSyncStateRequest{MailboxId: inbox, LeaseToken: tok, State: &mailbusv1.MailboxSyncState{Uidvalidity: 1, SyncedUidnext: 6}})
				return err
			}},
			{"IngestMessages", func(tok uint64) error {
				uid++
				it := imapItem(id, inbox, 1, uid, fmt.Appendf(nil, "Subject: %d\r\n\r\nx\r\n", uid))
				it.meta.LeaseToken = tok
				_, err := e.ingestStream(callCtx(t), []item{it})
				return err
			}},
			{"ApplyUpstreamChanges", func(tok uint64) error {
				_, err := e.ingest.ApplyUpstreamChanges(callCtx(t), &mailbusv1.ApplyUpstreamChangesRequest{AccountId: id, LeaseToken: tok, Changes: []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{
					Upstream: &mailbusv1.UpstreamId{MailboxId: inbox, Uidvalidity: 1, Uid: 5}, Flags: []string{`\Seen`}}}}}})
				return err
			}},
			{"AckWriteBack", func(tok uint64) error {
				_, err := e.ingest.AckWriteBack(callCtx(t), &mailbusv1.AckWriteBackRequest{WritebackId: wb, LeaseToken: tok, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY, Reason: "later"})
				return err
			}},
			{"RebindMessages", func(tok uint64) error {
				_, err := e.ingest.RebindMessages(callCtx(t), &mailbusv1.RebindMessagesRequest{AccountId: id, LeaseToken: tok, Placements: []*mailbusv1.UpstreamPlacement{{MessageId: msg, Upstream: &mailbusv1.UpstreamId{MailboxId: inbox, Uidvalidity: 1, Uid: 5}}}})
				return err
			}},
		}
		for _, w := range writes {
			checkStale(t, w.name, w.write(99))
			if err := w.write(100); err != nil {
				t.Errorf("%s with the current token: %v", w.name, err)
			}
		}
	})
}
