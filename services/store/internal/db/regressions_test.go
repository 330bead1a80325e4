package db_test

// Regression tests for defects found in review; each failed before its fix.

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

func pgWithLocker(t *testing.T) (*db.DB, *sql.DB) {
	u := dbtest.PostgresURL(t)
	d, err := db.Open(context.Background(), db.Config{URL: u, Secrets: dbtest.Secrets(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	raw, err := sql.Open("pgx", u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return d, raw
}

// holdLock holds the account row lock until release is called.
func holdLock(t *testing.T, raw *sql.DB, acct string) func() {
	tx, err := raw.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`UPDATE accounts SET modseq = modseq WHERE id = $1`, acct); err != nil {
		t.Fatal(err)
	}
	return func() { tx.Commit() }
}

func TestRegressionDoubleAckRacePG(t *testing.T) {
	d, raw := pgWithLocker(t)
	ctx := context.Background()
	a := mustCreate(t, d, imapAccount("work"))
	inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
	archive := mustMailbox(t, d, a.Id, "Archive", 2)
	m := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1)))[0].MessageId
	if _, _, err := d.UpdateFlags(ctx, device, a.Id, []string{m}, []string{`\Seen`}, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.MoveMessages(ctx, device, a.Id, []string{m}, archive.Id); err != nil {
		t.Fatal(err)
	}
	wbs := pending(t, d, a.Id)
	release := holdLock(t, raw, a.Id)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := d.AckWriteBack(ctx, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED, Reason: "x"}); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond)
	release()
	wg.Wait()
	var p int
	raw.QueryRow(`SELECT pending_writebacks FROM messages WHERE id = $1`, m).Scan(&p)
	n := countKind(allEvents(t, d, a.Id), "writeback.failed")
	t.Logf("writeback.failed events: %d (want 1); pending_writebacks: %d (want 1: the move is still pending)", n, p)
	if n != 1 || p != 1 {
		t.Errorf("double ack applied twice")
	}
}

func TestRegressionDoubleDeleteMailboxPG(t *testing.T) {
	d, raw := pgWithLocker(t)
	ctx := context.Background()
	a := mustCreate(t, d, imapAccount("work"))
	mustMailbox(t, d, a.Id, "INBOX", 1)
	box := mustMailbox(t, d, a.Id, "Old", 2)
	release := holdLock(t, raw, a.Id)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.DeleteMailbox(ctx, device, box.Id)
		}()
	}
	time.Sleep(300 * time.Millisecond)
	release()
	wg.Wait()
	n := countKind(allEvents(t, d, a.Id), "mailbox.deleted")
	t.Logf("errors %v; mailbox.deleted events %d; pending write-backs %d", errs, n, len(pending(t, d, a.Id)))
	if n != 1 {
		t.Errorf("mailbox deleted twice")
	}
}

func TestRegressionFailedCreateMailboxDropsMovedMessages(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		m := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1)))[0].MessageId
		mb, err := d.CreateMailbox(ctx, device, a.Id, "Projects")
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := d.MoveMessages(ctx, device, a.Id, []string{m}, mb.Id); err != nil {
			t.Fatal(err)
		}
		wbs := pending(t, d, a.Id)
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED, Reason: "NO [CANNOT]"})
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[1].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED, Reason: "NO [TRYCREATE]"})
		if _, err := d.GetMessageSummary(ctx, m); err != nil {
			t.Errorf("message still in INBOX upstream (uid 5) is gone from the store: %v", err)
		}
	})
}

func TestRegressionAppendWithoutAppendUIDDuplicates(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		if _, err := d.AppendMessage(ctx, device, inbox.Id, rawMessage(7), nil, zeroTime); err != nil {
			t.Fatal(err)
		}
		wbs := pending(t, d, a.Id)
		// Server without UIDPLUS: no APPENDUID.
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})
		res := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 9, rawMessage(7)))
		if res[0].Created {
			t.Errorf("the appended message's own echo was stored as a second copy (placement without uid says 'found by content hash')")
		}
	})
}

func TestRegressionRenameChildCollision(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		mustMailbox(t, d, a.Id, "INBOX", 1)
		src := mustMailbox(t, d, a.Id, "A", 2)
		mustMailbox(t, d, a.Id, "A/x", 3)
		mustMailbox(t, d, a.Id, "C/x", 4)
		start := time.Now()
		_, err := d.RenameMailbox(ctx, device, src.Id, "C")
		t.Logf("err=%v (took %v)", err, time.Since(start))
		if !errors.Is(err, db.ErrConflict) {
			t.Errorf("rename colliding with a child is not ErrConflict (becomes INTERNAL)")
		}
	})
}

func TestRegressionReportStatusUTF8(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		a := mustCreate(t, d, imapAccount("work"))
		reason := strings.Repeat("a", 1999) + "ééé"
		err := d.ReportStatus(context.Background(), a.Id, &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_RETRYING, Reason: reason})
		if err != nil {
			t.Errorf("ReportStatus with a long non-ASCII reason fails: %v", err)
		}
	})
}

func TestRegressionListUpstreamIdsAllMailboxes(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1)))
		n := 0
		d.ListUpstreamIds(ctx, a.Id, "", 100, func(b []*mailbusv1.UpstreamMessage) error { n += len(b); return nil })
		if n != 1 {
			t.Errorf("ListUpstreamIds(account, mailbox \"\") on IMAP returned %d ids, proto says 'empty for every mailbox'", n)
		}
	})
}

func TestRegressionFollowServerMoveIntoDeletedMailbox(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		x := mustMailbox(t, d, a.Id, "X", 2)
		m := mustIngest(t, d, imapItem(a.Id, x.Id, 2, 5, rawMessage(1)))[0].MessageId
		if _, _, err := d.MoveMessages(ctx, device, a.Id, []string{m}, inbox.Id); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_MailboxDelete{MailboxDelete: &mailbusv1.UpstreamMailboxDelete{MailboxId: x.Id}}}}); err != nil {
			t.Fatal(err)
		}
		wbs := pending(t, d, a.Id)
		err := d.AckWriteBack(ctx, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED, Reason: "NO no such mailbox"})
		if err != nil {
			t.Errorf("ack FAILED of a move whose source mailbox was deleted upstream fails: %v", err)
		}
	})
}

func TestRegressionDeleteBeforeAppendReachesTheServer(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		drafts := mustMailbox(t, d, a.Id, "Drafts", 3)
		s, err := d.AppendMessage(ctx, device, drafts.Id, rawMessage(1), nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.DeleteMessages(ctx, device, a.Id, []string{s.Id}); err != nil {
			t.Fatal(err)
		}
		wbs := pending(t, d, a.Id)
		if len(wbs) != 2 || wbs[0].GetAppend() == nil || len(wbs[1].GetDelete().GetTargets()) != 1 {
			t.Fatalf("want the append then a delete of it, got %v", wbs)
		}
		// The append reaches the server: the pending delete learns where.
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED,
			Placements: []*mailbusv1.UpstreamPlacement{{MessageId: s.Id, Upstream: &mailbusv1.UpstreamId{MailboxId: drafts.Id, Uidvalidity: 3, Uid: 41}}}})
		wbs = pending(t, d, a.Id)
		if len(wbs) != 1 || wbs[0].GetDelete().GetTargets()[0].GetUpstream().GetUid() != 41 {
			t.Fatalf("delete not retargeted: %v", wbs)
		}
	})
}

func TestRegressionWatchReplayFailsWhenPrunedMeanwhile(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		mustIngest(t, d, pop3Item(a.Id, "u1", rawMessage(1)))
		if _, err := d.ReplayCursor(ctx, a.Id, 0); err != nil {
			t.Fatal(err)
		}
		p, _ := d.Unpublished(ctx, 100)
		var seqs []int64
		for _, e := range p {
			seqs = append(seqs, e.Seq)
		}
		if err := d.MarkPublished(ctx, seqs); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Prune(ctx, -time.Second); err != nil {
			t.Fatal(err)
		}
		// What WatchChanges checks after its replay.
		if err := d.CheckReplayable(ctx, a.Id, 0); !errors.Is(err, db.ErrCannotCalculateChanges) {
			t.Fatalf("after prune: %v", err)
		}
	})
}
