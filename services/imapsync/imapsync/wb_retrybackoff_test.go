package imapsync_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// A write-back the server refuses for now ([UNAVAILABLE]: RETRY) waits
// longer after each attempt (WriteBackRetry, doubled), and meanwhile a
// write-back of another message is applied at once. After the last
// attempt it fails and the store follows the server.
func TestMemWriteBackRetryBacksOff(t *testing.T) {
	const base = 300 * time.Millisecond
	var (
		mu      sync.Mutex
		refused []time.Time
	)
	h := &memHooks{store: func(flags *imap.StoreFlags) error {
		if !slices.Contains(flags.Flags, imap.FlagFlagged) {
			return nil
		}
		mu.Lock()
		refused = append(refused, time.Now())
		mu.Unlock()
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable, Text: "try again later"}
	}}
	e := startStore(t)
	mem := startMemHooked(t, h)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 2 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, func(c *imapsync.Config) { c.WriteBackRetry = base; c.RetryMax = 10 * time.Second })
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	inbox := e.storeFolder(t, a.Id, "INBOX")
	js := e.consume(t, a.Id)
	ctx := ctxT(t)
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[1].id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first refusal", func() bool { mu.Lock(); defer mu.Unlock(); return len(refused) >= 1 })
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[2].id}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the other message's flag on the server", func() bool {
		return slices.Contains(serverFolder(t, tp, "INBOX")[2].flags, `\Seen`)
	})
	waitFor(t, "the refused write-back failed", func() bool {
		return js.count(func(ev *mailbusv1.Event) bool { return ev.GetWritebackFailed() != nil }) == 1
	})
	waitFor(t, "the store follows the server", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
	mu.Lock()
	defer mu.Unlock()
	if len(refused) != 5 {
		t.Fatalf("%d attempts, want 5", len(refused))
	}
	for i := 1; i < len(refused); i++ {
		want := base << (i - 1)
		if gap := refused[i].Sub(refused[i-1]); gap < want {
			t.Errorf("attempt %d came %v after the one before, want at least %v", i+1, gap, want)
		}
	}
}
