package imapsync_test

import (
	"errors"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemSyncNow: with an hour's poll, a third party's changes in a
// folder nobody IDLEs are in the store as soon as SyncNow returns (the
// pass has ended: no waiting); an account not worked here is
// ErrNotWorked.
func TestMemSyncNow(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Archive")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "Archive", testMessage(1, "Archive"))
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	sy := startSync(t, e, func(c *imapsync.Config) { c.PollInterval = time.Hour })
	waitFor(t, "initial sync", func() bool {
		return sameView(serverFolder(t, tp, "Archive"), e.storeFolder(t, a.Id, "Archive")) == nil &&
			e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	if _, err := tp.Select("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "Archive", testMessage(2, "Archive"))
	ctx := ctxT(t)
	var err error
	waitFor(t, "SyncNow taken by the session", func() bool {
		err = sy.svc.SyncNow(ctx, a.Id)
		return !errors.Is(err, imapsync.ErrNotWorked)
	})
	if err != nil {
		t.Fatalf("SyncNow: %v", err)
	}
	if err := sameView(serverFolder(t, tp, "Archive"), e.storeFolder(t, a.Id, "Archive")); err != nil {
		t.Errorf("after SyncNow: %v", err)
	}
	if err := sy.svc.SyncNow(ctx, "999999"); !errors.Is(err, imapsync.ErrNotWorked) {
		t.Errorf("SyncNow of an account not worked here: %v, want ErrNotWorked", err)
	}
}
