package pop3fetcher_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// stalledConn is a connection to the store on which the calls of method
// are accepted and never answered (until the caller gives up).
func (e *env) stalledConn(t testing.TB, method string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken),
		grpc.WithUnaryInterceptor(func(ctx context.Context, m string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if m == method {
				<-ctx.Done()
				return status.FromContextError(ctx.Err()).Err()
			}
			return invoker(ctx, m, req, reply, cc, opts...)
		}),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, m string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, m, opts...)
			if err != nil || m != method {
				return cs, err
			}
			return &hungStream{cs}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestStalledStoreCallsAreBounded: a store that never answers one kind of
// call holds a pass up for about Config.StoreTimeout at most, never for as
// long as the pass's context lives. A stalled secret or listing fails the
// pass (temporary, kind store) before anything is deleted; stalled status
// reports only lose the reports: the pass goes on and succeeds, and
// progress reports (one per message here) do not slow the download.
//
// StoreTimeout also bounds the ingest stream's watchdog, which the real
// store must not trip: where the pass is to succeed, the timeout is long
// enough for a batch commit under -race on a loaded machine (300 ms cut
// the stream there in CI), and still short enough that twenty
// synchronous reports (40 s) would fail the bound.
func TestStalledStoreCallsAreBounded(t *testing.T) {
	cases := []struct {
		method       string
		fails        bool
		storeTimeout time.Duration
	}{
		{mailbusv1.IngestService_GetAccountSecret_FullMethodName, true, 300 * time.Millisecond},
		{mailbusv1.IngestService_ListUpstreamIds_FullMethodName, true, 300 * time.Millisecond},
		{mailbusv1.IngestService_ReportAccountStatus_FullMethodName, false, 2 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			storeTimeout := tc.storeTimeout
			e := startStore(t)
			msgs := someMessages(1, 20)
			srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
			acct := e.fakeAccount(t, srv, "bob", "pw", dele)
			f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) {
				c.Conn = e.stalledConn(t, tc.method)
				c.StoreTimeout = storeTimeout
				c.ProgressEvery = time.Nanosecond
				c.FlushMessages = 1
			})
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			start := time.Now()
			res, err := f.Poll(ctx, acct)
			// Synchronous progress reports alone would take 20 x 300 ms.
			if d := time.Since(start); d > 10*storeTimeout {
				t.Errorf("Poll took %v with StoreTimeout %v", d.Round(time.Millisecond), storeTimeout)
			}
			idle(t, srv)
			if tc.fails {
				var pe *pop3fetcher.PassError
				if !errors.As(err, &pe) || pe.Kind != pop3fetcher.KindStore || pe.Permanent {
					t.Fatalf("pass: %v, want a temporary store error", err)
				}
				if n := len(srv.Messages("bob")); n != len(msgs) {
					t.Errorf("the server holds %d messages, want %d", n, len(msgs))
				}
				return
			}
			if err != nil {
				t.Fatalf("pass: %v", err)
			}
			if res.Fetched != len(msgs) || res.Deleted != len(msgs) {
				t.Errorf("pass: %+v", res)
			}
			e.checkStoredExactly(t, acct.Id, wires(msgs))
		})
	}
}

// TestStalledAccountListBoundsRunOnce: RunOnce fails after about
// Config.StoreTimeout when the store never answers ListAccounts.
func TestStalledAccountListBoundsRunOnce(t *testing.T) {
	e := startStore(t)
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) {
		c.Conn = e.stalledConn(t, mailbusv1.AccountService_ListAccounts_FullMethodName)
		c.StoreTimeout = 300 * time.Millisecond
	})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	start := time.Now()
	err := f.RunOnce(ctx)
	if d := time.Since(start); err == nil || d > 10*300*time.Millisecond {
		t.Errorf("RunOnce: %v after %v", err, d.Round(time.Millisecond))
	}
}
