package imapsync_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailbus/mailbus/pkg/accountrun"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// generationGate sits on imapsync's connection to the store. It holds
// back every account list, and every account read (the supervisor reads
// an account the store announces changed), that shows an account at
// generation hold or later until open is called, so that the supervisor
// keeps the worker of the older generation; and it hands over the outcome
// of every PARKED status report.
type generationGate struct {
	hold   uint64
	opened chan struct{}
	once   sync.Once
	parked chan error
}

func newGenerationGate(hold uint64) *generationGate {
	return &generationGate{hold: hold, opened: make(chan struct{}), parked: make(chan error, 16)}
}

func (g *generationGate) open() { g.once.Do(func() { close(g.opened) }) }

func (g *generationGate) intercept(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	switch r := reply.(type) {
	case *mailbusv1.ListAccountsResponse:
		for _, a := range r.GetAccounts() {
			if err == nil && a.Generation >= g.hold {
				select {
				case <-g.opened:
				case <-ctx.Done():
					return ctx.Err()
				}
				break
			}
		}
	case *mailbusv1.GetAccountResponse:
		if err == nil && r.GetAccount().GetGeneration() >= g.hold {
			select {
			case <-g.opened:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	case *mailbusv1.ReportAccountStatusResponse:
		if req.(*mailbusv1.ReportAccountStatusRequest).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
			g.parked <- err
		}
	}
	return err
}

// TestMemOldGenerationFailureDoesNotPark (issue 17, defect C, as in the
// POP3 fetcher): the account's password is fixed while a login with the
// old, wrong one is in flight. The refusal of that login (generation 1)
// reaches the store after the update (generation 2): the store refuses to
// record it, the account is not parked, and the worker of generation 2
// syncs. The server holds the answer to the old password, and imapsync's
// account list is held back, until the update has landed.
func TestMemOldGenerationFailureDoesNotPark(t *testing.T) {
	inFlight := make(chan struct{}, 1)
	release := make(chan struct{})
	h := &memHooks{login: func(_ *imapserver.Conn, _, pass string) error {
		if pass != "wrong-pw" {
			return nil
		}
		select {
		case inFlight <- struct{}{}:
		default:
		}
		<-release
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "wrong password"}
	}}
	e := startStore(t)
	mem := startMemHooked(t, h)
	c := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, c, "INBOX", testMessage(1, "INBOX"))
	acct := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "wrong-pw", nil)
	gate := newGenerationGate(acct.Generation + 1)
	t.Cleanup(gate.open)
	var releaseOnce sync.Once
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	conn := dialStore(t, e.addr, e.serviceToken, grpc.WithChainUnaryInterceptor(gate.intercept))
	startSync(t, e, func(c *imapsync.Config) { c.StoreConn = conn })

	select {
	case <-inFlight:
	case <-time.After(waitLong):
		t.Fatal("no login with the old password")
	}
	resp, err := e.accounts.UpdateAccount(ctxT(t), &mailbusv1.UpdateAccountRequest{
		Account:    &mailbusv1.Account{Id: acct.Id, Secret: "secret"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	releaseOnce.Do(func() { close(release) }) // the server refuses the old password now

	var parkErr error
	select {
	case parkErr = <-gate.parked:
	case <-time.After(waitLong):
		t.Fatal("no PARKED status report")
	}
	if !accountrun.IsStaleGeneration(parkErr) {
		t.Errorf("the old generation's PARKED report: %v, want a STALE_GENERATION refusal", parkErr)
	}
	if st := e.account(t, acct.Id).GetStatus(); st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Fatalf("the account of generation %d is parked by a failure of generation %d: %s", resp.Account.Generation, acct.Generation, st.GetReason())
	}

	gate.open()
	waitFor(t, "the message synced by the new generation", func() bool { return len(e.storeFolder(t, acct.Id, "INBOX")) == 1 })
	waitFor(t, "the account idle", func() bool {
		return e.account(t, acct.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
}
