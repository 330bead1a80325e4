package store_test

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/auth"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestWatchStreamsPerToken: a device token of one account may hold
// auth.MaxWatchesPerToken WatchChanges streams; one more is
// RESOURCE_EXHAUSTED, another token and the admin token are not affected,
// and closing a stream frees its place.
func TestWatchStreamsPerToken(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		f := newAuthFixture(t, b)
		other := f.token(t, "tablet", false, f.a.account)
		watch := func(token string) (context.CancelFunc, error) {
			// Not callCtx: its deadline (rpcLong) would end the first
			// streams while the later ones open on a slow machine, and
			// free their places (a CI run at load 20 opened stream 33
			// 33 s after stream 1, and got no RESOURCE_EXHAUSTED).
			ctx, cancel := context.WithCancel(t.Context())
			stream, err := mailbusv1.NewSyncServiceClient(f.e.dial(t, token)).WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: f.a.account})
			if err == nil {
				for {
					resp, rerr := stream.Recv()
					if rerr != nil {
						err = rerr
						break
					}
					if resp.CaughtUp {
						break
					}
				}
			}
			if err != nil {
				cancel()
			}
			return cancel, err
		}
		var open []context.CancelFunc
		defer func() {
			for _, c := range open {
				c()
			}
		}()
		for i := 0; i < auth.MaxWatchesPerToken; i++ {
			cancel, err := watch(f.deviceA)
			if err != nil {
				t.Fatalf("stream %d: %v", i+1, err)
			}
			open = append(open, cancel)
		}
		if _, err := watch(f.deviceA); status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("stream %d of one token: %v, want ResourceExhausted", auth.MaxWatchesPerToken+1, err)
		}
		for _, tok := range []string{other, f.e.adminToken} {
			cancel, err := watch(tok)
			if err != nil {
				t.Fatalf("another token's stream: %v", err)
			}
			cancel()
		}
		open[0]()
		open = open[1:]
		waitFor(t, 30*time.Second, "a closed stream frees its place", func() bool {
			cancel, err := watch(f.deviceA)
			if err == nil {
				open = append(open, cancel)
			}
			return err == nil
		})
	})
}
