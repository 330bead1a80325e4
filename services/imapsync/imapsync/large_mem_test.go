package imapsync_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// A message larger than MaxMessageSize is left on the server without its
// body being downloaded (RFC822.SIZE says so first), and it does not
// hide a later expunge: the server's count (with the large message) then
// equals the store's (with the expunged one), yet the expunge arrives.
func TestMemTooLargeMessageSkippedAndExpungeSeen(t *testing.T) {
	const large = 200 << 10
	e := startStore(t)
	mem := startMem(t)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
	appendMsg(t, tp, "INBOX", append(testMessage(2, "INBOX"), strings.Repeat("large body line\r\n", large/17)...))
	appendMsg(t, tp, "INBOX", testMessage(3, "INBOX"))
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	sy := startSync(t, e, func(c *imapsync.Config) { c.MaxMessageSize = 64 << 10 })
	waitFor(t, "initial sync of the small messages", func() bool {
		st := e.storeFolder(t, a.Id, "INBOX")
		return len(st) == 2 && st[1].id != "" && st[3].id != ""
	})
	waitFor(t, "status idle", func() bool {
		return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	if n := sy.cuts.read.Load(); n >= large {
		t.Errorf("read %d bytes from the server: the large message (%d bytes) was downloaded", n, large)
	}
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.UIDExpunge(imap.UIDSetNum(1)).Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the expunge in the store", func() bool {
		st := e.storeFolder(t, a.Id, "INBOX")
		_, still := st[1]
		return !still && len(st) == 1
	})
	if n := sy.cuts.read.Load(); n >= large {
		t.Errorf("read %d bytes from the server: the large message (%d bytes) was downloaded", n, large)
	}
}
