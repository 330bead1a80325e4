package imapsync_test

import (
	"testing"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// With CONDSTORE, a UIDVALIDITY change rebinds the stored messages to
// their new UIDs without fetching them; flags a third party changed
// before the change (below the new HIGHESTMODSEQ, so CHANGEDSINCE never
// shows them) must still reach the store.
func TestDovecotRebindComparesFlags(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 5)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	first := startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	first.stop()
	before := e.storeFolder(t, a.Id, "INBOX")
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Important"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	uv, err := s.ChangeUIDValidity("alice", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	tp = dialDovecot(t, s) // Dovecot disconnected the old session
	startSync(t, e, withRoots(s))
	waitFor(t, "the store rebound to the new UIDVALIDITY", func() bool {
		st := e.storeFolder(t, a.Id, "INBOX")
		for _, m := range st {
			if m.uv != uv {
				return false
			}
		}
		return len(st) == 5
	})
	waitFor(t, "the third party's flags in the store", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
	if got := e.storeFolder(t, a.Id, "INBOX")[2].id; got != before[2].id {
		t.Errorf("message id %s after the rebind, want %s (not fetched again)", got, before[2].id)
	}
}
