package imapsync_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// interceptedStoreConn is a connection to the store for imapsync whose
// unary calls go through intercept first.
func interceptedStoreConn(t testing.TB, e *env, intercept grpc.UnaryClientInterceptor) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken), grpc.WithChainUnaryInterceptor(intercept))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestMemFlagsIgnoredForAChangeMadeMeanwhileAreReadAgain is issue 17 B:
// a device changes a message's flags between imapsync's read of the
// third party's flag change and its ApplyUpstreamChanges, so the store
// ignores the read (a write-back is pending) although imapsync saw none
// pending. The store says which flags it ignored; once the device's
// write-back has settled, imapsync reads them again and the third
// party's \Flagged reaches the store (the server has no CONDSTORE, so
// nothing else would make it look again).
func TestMemFlagsIgnoredForAChangeMadeMeanwhileAreReadAgain(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 2 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	testChangeMadeDuringRead(t, e, a, tp, nil, func() {
		if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
			t.Fatal(err)
		}
		if err := tp.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// testChangeMadeDuringRead runs the test above: the account's INBOX has
// UID 1, thirdParty adds \Flagged to it on the server.
func testChangeMadeDuringRead(t *testing.T, e *env, a *mailbusv1.Account, tp *imapclient.Client, mod func(*imapsync.Config), thirdParty func()) {
	// imapsync's store connection: on the first ApplyUpstreamChanges that
	// carries the third party's \Flagged, the device's change is made
	// first.
	var armed, fired atomic.Bool
	var msgID atomic.Value
	intercept := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if r, ok := req.(*mailbusv1.ApplyUpstreamChangesRequest); ok && armed.Load() && !fired.Load() {
			for _, c := range r.Changes {
				if fl := c.GetFlags(); fl != nil && fl.GetUpstream().GetUid() == 1 && slices.Contains(fl.Flags, `\Flagged`) {
					fired.Store(true)
					if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{msgID.Load().(string)}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
						t.Errorf("the device's change: %v", err)
					}
				}
			}
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	conn := interceptedStoreConn(t, e, intercept)
	startSync(t, e, func(c *imapsync.Config) {
		c.StoreConn = conn
		if mod != nil {
			mod(c)
		}
	})
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	msgID.Store(e.storeFolder(t, a.Id, "INBOX")[1].id)
	armed.Store(true)
	thirdParty()
	waitFor(t, "the device's change made during the read", fired.Load)
	waitFor(t, "the device's \\Seen and the third party's \\Flagged in the store and on the server", func() bool {
		srv := serverFolder(t, tp, "INBOX")
		return sameView(srv, e.storeFolder(t, a.Id, "INBOX")) == nil && len(srv[1].flags) == 2
	})
}
