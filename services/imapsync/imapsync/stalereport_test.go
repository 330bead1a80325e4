package imapsync_test

import (
	"context"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestRefusedStatusReportStopsSession: another replica claims the account
// just before the worker reports that its initial sync is done; that
// report is refused as STALE_LEASE. The worker must stop there — close
// its connections, open no IDLE connection — rather than go on polling,
// which writes nothing the store could refuse.
func TestRefusedStatusReportStopsSession(t *testing.T) {
	e := startStore(t)
	addr, lis := startCountedMem(t)
	c := dialPlain(t, addr, "alice", "secret")
	appendMsg(t, c, "INBOX", testMessage(1, "INBOX"))
	c.Logout()
	a := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	var once sync.Once
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if r, ok := req.(*mailbusv1.ReportAccountStatusRequest); ok && r.GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE {
				once.Do(func() {
					// Another replica claims the account now.
					if _, err := e.ingest.ClaimAccount(ctx, &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: 7}); err != nil {
						t.Errorf("claim: %v", err)
					}
				})
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.StoreConn = conn; c.Registry = reg })
	waitFor(t, "the worker to stop on the refused status report", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "mailbus_imapsync_stale_lease_stops_total" {
				return mf.GetMetric()[0].GetCounter().GetValue() == 1
			}
		}
		return false
	})
	waitFor(t, "the worker's connections closed", func() bool { return lis.open() == 0 })
	if got := len(e.storeFolder(t, a.Id, "INBOX")); got != 1 {
		t.Errorf("%d messages stored by the initial sync, want 1", got)
	}
	if got := lis.maxConcurrent(); got != 1 {
		t.Errorf("%d connections at once: an IDLE connection was opened after the refusal", got)
	}
}
