package imapsync_test

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailbus/mailbus/pkg/accountrun/accountruntest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// pickupEnv is a store, an in-memory IMAP server with one message behind
// a tap, and imapsync whose account list is read once an hour and can be
// refused: an account it works once lists are refused was picked up from
// the store's announcement (decision 0028).
type pickupEnv struct {
	e    *env
	mem  *memServer
	tap  *accountruntest.Tap
	gate *accountruntest.Gate
}

func startPickup(t *testing.T) *pickupEnv {
	t.Helper()
	p := &pickupEnv{e: startStore(t), mem: startMem(t), gate: accountruntest.NewGate()}
	c := dialPlain(t, p.mem.addr, "alice", "secret")
	appendMsg(t, c, "INBOX", testMessage(1, "INBOX"))
	p.tap = accountruntest.StartTap(t, p.mem.addr)
	conn := dialStore(t, p.e.addr, p.e.serviceToken, p.gate.DialOptions()...)
	startSync(t, p.e, func(c *imapsync.Config) {
		c.StoreConn = conn
		c.AccountRefresh = time.Hour
	})
	p.gate.WaitWatching(t, waitLong)
	return p
}

// TestMemPickupNewAccountAnnounced: an account added while imapsync runs
// (and every account list is refused) is worked: its first command
// reaches the server, and its message the store.
func TestMemPickupNewAccountAnnounced(t *testing.T) {
	p := startPickup(t)
	p.gate.RefuseLists(true)
	acct := p.e.createAccount(t, p.tap.Addr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	p.tap.WaitFirstCommand(t, waitLong)
	waitFor(t, "the new account's message in the store", func() bool { return len(p.e.storeFolder(t, acct.Id, "INBOX")) == 1 })
}

// TestMemPickupUpdateAnnounced: the password of a parked account is fixed
// while every account list is refused; the worker of the new generation
// starts from the announcement and syncs.
func TestMemPickupUpdateAnnounced(t *testing.T) {
	p := startPickup(t)
	acct := p.e.createAccount(t, p.tap.Addr(), mailbusv1.Security_SECURITY_NONE, "alice", "wrong-pw", nil)
	waitFor(t, "the account parked by its wrong password", func() bool {
		return p.e.account(t, acct.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
	})
	p.gate.RefuseLists(true)
	p.tap.Drain()
	if _, err := p.e.accounts.UpdateAccount(ctxT(t), &mailbusv1.UpdateAccountRequest{
		Account:    &mailbusv1.Account{Id: acct.Id, Secret: "secret"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
	}); err != nil {
		t.Fatal(err)
	}
	p.tap.WaitFirstCommand(t, waitLong)
	waitFor(t, "the message synced by the new generation", func() bool { return len(p.e.storeFolder(t, acct.Id, "INBOX")) == 1 })
}

// TestMemPickupAfterStoreRestart: the store restarts, breaking the
// announcement stream. An account added right after the restart is worked
// (by the announcement or by the list made when the stream is back), and
// so is one added later while lists are refused: the stream was
// established again.
func TestMemPickupAfterStoreRestart(t *testing.T) {
	p := startPickup(t)
	p.e.restartStore(t)
	first := p.e.createAccount(t, p.tap.Addr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	waitFor(t, "the account added after the restart synced", func() bool { return len(p.e.storeFolder(t, first.Id, "INBOX")) == 1 })

	p.gate.WaitWatching(t, waitLong)
	p.gate.RefuseLists(true)
	second := p.e.createAccount(t, p.tap.Addr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	waitFor(t, "the account added once the stream was back synced", func() bool { return len(p.e.storeFolder(t, second.Id, "INBOX")) == 1 })
}
