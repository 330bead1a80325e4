package imapsync_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// Without MOVE a move is UID COPY, then STORE \Deleted and UID EXPUNGE in
// the source. When the server refuses that STORE after the COPY, the
// message must not end twice on the server and once in the store: with
// a temporary refusal the copy is removed again and the retry moves the
// message once; with a lasting refusal (the removal of the copy refused
// too) the write-back fails and the store knows both copies.
func TestMemMoveWithoutMOVERefusedDeleteAfterCopy(t *testing.T) {
	for _, tc := range []struct {
		name            string
		refusals        int // \Deleted STOREs refused; -1: all
		code            imap.ResponseCode
		wantFailed      int
		inbox, arch     int
		minRefusalsSeen int
	}{
		{name: "temporary, once", refusals: 1, code: imap.ResponseCodeUnavailable, wantFailed: 0, inbox: 2, arch: 2, minRefusalsSeen: 1},
		{name: "lasting", refusals: -1, wantFailed: 1, inbox: 3, arch: 2, minRefusalsSeen: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var (
				mu    sync.Mutex
				seen  int
				armed bool
			)
			h := &memHooks{
				caps: imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapUIDPlus: {}},
				store: func(flags *imap.StoreFlags) error {
					mu.Lock()
					defer mu.Unlock()
					if !armed || !slices.Contains(flags.Flags, imap.FlagDeleted) {
						return nil
					}
					if tc.refusals >= 0 && seen >= tc.refusals {
						return nil
					}
					seen++
					return &imap.Error{Type: imap.StatusResponseTypeNo, Code: tc.code, Text: "not now"}
				},
			}
			e := startStore(t)
			mem := startMemHooked(t, h, "Archive")
			tp := dialPlain(t, mem.addr, "alice", "secret")
			for i := range 3 {
				appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
			}
			appendMsg(t, tp, "Archive", testMessage(9, "Archive"))
			// Polls (deltas of Archive) come between two attempts: a copy
			// left there would be adopted as the message before the retry.
			a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) { a.PollInterval = durationpb.New(time.Second) })
			startSync(t, e, func(c *imapsync.Config) {
				c.PollInterval = time.Second
				c.WriteBackRetry = 3 * time.Second
				c.RetryMax = 5 * time.Second
			})
			waitFor(t, "initial sync", func() bool {
				return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil &&
					sameView(serverFolder(t, tp, "Archive"), e.storeFolder(t, a.Id, "Archive")) == nil
			})
			js := e.consume(t, a.Id)
			mu.Lock()
			armed = true
			mu.Unlock()
			ctx := ctxT(t)
			id := e.storeFolder(t, a.Id, "INBOX")[1].id
			if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "no pending write-backs", func() bool {
				r, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id, Max: 10})
				return err == nil && len(r.Writebacks) == 0
			})
			waitFor(t, "the store matches the server", func() bool {
				srvIn, srvAr := serverFolder(t, tp, "INBOX"), serverFolder(t, tp, "Archive")
				return len(srvIn) == tc.inbox && len(srvAr) == tc.arch &&
					sameView(srvIn, e.storeFolder(t, a.Id, "INBOX")) == nil &&
					sameView(srvAr, e.storeFolder(t, a.Id, "Archive")) == nil
			})
			if n := js.count(func(ev *mailbusv1.Event) bool { return ev.GetWritebackFailed() != nil }); n != tc.wantFailed {
				t.Errorf("%d writeback.failed events, want %d", n, tc.wantFailed)
			}
			mu.Lock()
			defer mu.Unlock()
			if seen < tc.minRefusalsSeen {
				t.Errorf("%d STOREs refused, want at least %d (the path was not taken)", seen, tc.minRefusalsSeen)
			}
		})
	}
}
