package imapsync_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// The initial sync reports its progress in bytes (the total from STATUS
// SIZE) as well as in messages, and during the sync, not only at the end
// of each folder: with a progress interval of 1ns and batches of 10, the
// 60 messages are reported batch by batch.
func TestMemInitialSyncProgressInBytes(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Archive")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	var total uint64
	for i := range 40 {
		raw := testMessage(i, "INBOX")
		raw = append(raw, strings.Repeat("x", 1000+i)...)
		total += uint64(len(raw))
		appendMsg(t, tp, "INBOX", raw)
	}
	for i := range 20 {
		raw := testMessage(i, "Archive")
		total += uint64(len(raw))
		appendMsg(t, tp, "Archive", raw, imap.FlagSeen)
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	js := e.consume(t, a.Id)
	startSync(t, e, func(c *imapsync.Config) { c.FetchBatch = 10; c.ProgressInterval = 1 })
	waitFor(t, "the idle status event", func() bool {
		return js.count(func(ev *mailbusv1.Event) bool {
			return ev.GetAccountStatus().GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
		}) > 0
	})
	var reports []*mailbusv1.SyncProgress
	js.count(func(ev *mailbusv1.Event) bool {
		if st := ev.GetAccountStatus().GetStatus(); st.GetState() == mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC {
			reports = append(reports, st.GetProgress())
		}
		return false
	})
	if len(reports) == 0 {
		t.Fatal("no initial sync progress reported")
	}
	midway, last := 0, reports[len(reports)-1]
	for _, p := range reports {
		if p.BytesTotal != total {
			t.Errorf("bytes total %d, want %d (the sum of the folders' sizes)", p.BytesTotal, total)
		}
		if p.MessagesTotal != 60 {
			t.Errorf("messages total %d, want 60", p.MessagesTotal)
		}
		if p.MessagesDone > 0 && p.MessagesDone < 60 && p.BytesDone > 0 && p.BytesDone < total {
			midway++
		}
	}
	if midway < 4 {
		t.Errorf("%d reports with part of the sync done, want one per batch (at least 4): %v", midway, reports)
	}
	if last.MessagesDone != 60 || last.BytesDone != total {
		t.Errorf("last report: %d messages, %d bytes done; want 60, %d", last.MessagesDone, last.BytesDone, total)
	}
}
