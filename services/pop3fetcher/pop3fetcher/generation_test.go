package pop3fetcher_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/mailbus/mailbus/pkg/accountrun"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// generationGate sits on the fetcher's connection to the store. It holds
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

// waitParked returns the outcome of the next PARKED status report.
func (g *generationGate) waitParked(t testing.TB) error {
	t.Helper()
	select {
	case err := <-g.parked:
		return err
	case <-time.After(waitLong):
		t.Fatal("no PARKED status report")
		return nil
	}
}

// TestOldGenerationFailureDoesNotPark (issue 17, defect C): the account's
// password is fixed while a login with the old, wrong one is in flight.
// The refusal of that login (generation 1) reaches the store after the
// update (generation 2): the store refuses to record it, the account is
// not parked, and the worker of generation 2 polls and stores the mail.
// The server holds the answer to the old PASS, and the fetcher's account
// list is held back, until the update has landed: the interleaving of the
// field report is forced, not hoped for.
func TestOldGenerationFailureDoesNotPark(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 2)
	release := make(chan struct{})
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "right-pw-5", msgs...),
		pop3test.WithFault(pop3test.Pause("PASS wrong-pw-5", 0, release).Once()))
	acct := e.fakeAccount(t, srv, "bob", "wrong-pw-5", dele)
	gate := newGenerationGate(acct.Generation + 1)
	t.Cleanup(gate.open)
	conn := e.dial(t, e.serviceToken, grpc.WithChainUnaryInterceptor(gate.intercept))
	f, reg := e.newFetcher(t, func(c *pop3fetcher.Config) { c.Conn = conn })
	runFetcher(t, f)

	waitFor(t, "the login with the old password", func() bool { return srv.CommandCount("PASS") == 1 })
	updated := e.updateSecret(t, acct.Id, "right-pw-5")
	close(release) // the server refuses the old password now

	err := gate.waitParked(t)
	if !accountrun.IsStaleGeneration(err) {
		t.Errorf("the old generation's PARKED report: %v, want a STALE_GENERATION refusal", err)
	}
	if st := e.getAccount(t, acct.Id).GetStatus(); st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Fatalf("the account of generation %d is parked by a failure of generation %d: %s", updated.Generation, acct.Generation, st.GetReason())
	}
	if n := metric(t, reg, "mailbus_pop3_accounts", "state", "parked"); n != 0 {
		t.Errorf("%v workers parked", n)
	}

	gate.open()
	waitFor(t, "the messages stored and deleted", func() bool {
		return len(e.stored(t, acct.Id)) == 2 && len(srv.Messages("bob")) == 0
	})
	e.waitStatus(t, acct.Id, mailbusv1.SyncState_SYNC_STATE_IDLE)
	e.checkStoredExactly(t, acct.Id, wires(msgs))
	wrong := 0
	for _, c := range srv.Commands() {
		if c == "PASS wrong-pw-5" {
			wrong++
		}
	}
	if wrong != 1 {
		t.Errorf("%d logins with the old password, want 1", wrong)
	}
}
