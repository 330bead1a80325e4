package imapsync_test

import (
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemFolderLimit: a server that lists more folders than MaxFolders
// parks its account with a reason naming the limit, and none of its
// folders reach the store (only the INBOX every account has); an account of another server within the limit syncs.
func TestMemFolderLimit(t *testing.T) {
	e := startStore(t)
	many := startMem(t, "a", "b", "c", "d") // with INBOX: 5 folders
	few := startMem(t, "x")                 // 2 folders
	tooMany := e.createAccount(t, many.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	fine := e.createAccount(t, few.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, func(c *imapsync.Config) { c.MaxFolders = 3 })

	waitFor(t, "the account with too many folders parked", func() bool {
		st := e.account(t, tooMany.Id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED && strings.Contains(st.GetReason(), "more than 3 folders")
	})
	waitFor(t, "the other account idle", func() bool {
		return e.account(t, fine.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	for _, c := range []struct {
		account *mailbusv1.Account
		want    int
	}{{tooMany, 1}, {fine, 2}} {
		resp, err := e.mailboxes.ListMailboxes(ctxT(t), &mailbusv1.ListMailboxesRequest{AccountId: c.account.Id})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(resp.GetMailboxes()); got != c.want {
			t.Errorf("account %s: %d mailboxes in the store, want %d", c.account.Name, got, c.want)
		}
	}
}
