package imapsync_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// After a UIDVALIDITY change of a big folder, the matches are sent to the
// store in chunks, each under a deadline of its own: a chunk that comes
// after a slow one still has (nearly) the whole deadline, not what the
// first chunks left of a single one.
//
// The chunk is made small (RebindChunk) so that a few dozen messages make
// several chunks: with the default of 1,000 the test needed thousands of
// appends and a sync of them, and timed out on a loaded machine under -race.
func TestMemRebindInChunksEachWithItsOwnDeadline(t *testing.T) {
	const (
		chunk  = 10
		n      = 2*chunk + 5 // three chunks, the last one partial
		chunks = (n + chunk - 1) / chunk
	)
	e := startStore(t)
	mem := startMem(t, "Work")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	date := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	fill := func() {
		for i := range n {
			appendDated(t, tp, "Work", testMessage(i, "Work"), date)
		}
	}
	fill()
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	first := startSync(t, e, nil)
	waitFor(t, "initial sync", func() bool { return len(e.storeFolder(t, a.Id, "Work")) == n })
	first.stop()
	before := map[string]bool{}
	for _, m := range e.storeFolder(t, a.Id, "Work") {
		before[m.id] = true
	}
	// A new UIDVALIDITY: the folder deleted and made again, same messages.
	if err := tp.Delete("Work").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Create("Work", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	fill()
	sel, err := tp.Select("Work", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	newUV := sel.UIDValidity

	// Each RebindMessages call takes a while; record the time left of its
	// deadline when it starts.
	const slow = 2 * time.Second
	var (
		mu   sync.Mutex
		left []time.Duration
	)
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken),
		grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			if method == mailbusv1.IngestService_RebindMessages_FullMethodName {
				if d, ok := ctx.Deadline(); ok {
					mu.Lock()
					left = append(left, time.Until(d))
					mu.Unlock()
				}
				time.Sleep(slow)
			}
			return invoker(ctx, method, req, reply, cc, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	startSync(t, e, func(c *imapsync.Config) { c.StoreConn = conn; c.RebindChunk = chunk })
	waitFor(t, "the folder rebound", func() bool {
		st := e.storeFolder(t, a.Id, "Work")
		if len(st) != n {
			return false
		}
		for _, m := range st {
			if !before[m.id] || m.uv != newUV {
				return false
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return len(left) >= chunks
	})
	mu.Lock()
	defer mu.Unlock()
	if len(left) < chunks {
		t.Fatalf("%d RebindMessages calls, want %d chunks", len(left), chunks)
	}
	// With one deadline for all, the second chunk would start with at
	// most the deadline less the first chunk's time (slow).
	first0 := left[0]
	for i, l := range left[1:] {
		if l <= first0-slow/2 {
			t.Errorf("chunk %d started with %v of its deadline left, the first with %v: one deadline for all", i+2, l, first0)
		}
	}
}

func appendDated(t testing.TB, c *imapclient.Client, mailbox string, raw []byte, date time.Time) {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(raw)), &imap.AppendOptions{Time: date})
	if _, err := cmd.Write(raw); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
