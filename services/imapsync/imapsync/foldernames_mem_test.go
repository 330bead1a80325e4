package imapsync_test

import (
	"log/slog"
	"slices"
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailboxname"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemFolderNameLimits: a server listing one folder nested deeper than
// mailboxname.MaxDepth and one with a name longer than mailboxname.MaxLen
// (both of which the store refuses) gets the rest of its account synced:
// the other folders and their messages reach the store, the two do not,
// and each is logged once although the folders are listed again.
func TestMemFolderNameLimits(t *testing.T) {
	levels := make([]string, mailboxname.MaxDepth+1)
	for i := range levels {
		levels[i] = "d"
	}
	deep := strings.Join(levels, "/")
	long := strings.Repeat("n", mailboxname.MaxLen+1)
	atLimit := strings.Join(levels[1:], "/")

	e := startStore(t)
	mem := startMem(t, "Work", deep, long, atLimit)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "Work", testMessage(1, "Work"))
	appendMsg(t, tp, deep, testMessage(2, "deep"))
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	var logs lockedBuffer
	startSync(t, e, func(c *imapsync.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})

	waitFor(t, "the message in Work synced", func() bool { return len(e.storeFolder(t, a.Id, "Work")) == 1 })
	// A folder created upstream appears only through another LIST.
	if err := tp.Create("Later", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "Later", testMessage(3, "Later"))
	waitFor(t, "the folder created later synced", func() bool { return len(e.storeFolder(t, a.Id, "Later")) == 1 })

	want := []string{"INBOX", "Later", "Work", atLimit}
	slices.Sort(want)
	if got := e.mailboxNames(t, a.Id); !slices.Equal(got, want) {
		t.Errorf("mailboxes in the store: %q, want %q", got, want)
	}
	if st := e.account(t, a.Id).GetStatus(); st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Errorf("account parked: %s", st.GetReason())
	}
	out := logs.String()
	for what, name := range map[string]string{"deep": deep, "long": long} {
		if n := strings.Count(out, "folder="+name+" "); n != 1 {
			t.Errorf("the %s folder is logged %d times, want once; logs:\n%s", what, n, out)
		}
	}
}
