package db_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// fencedWrite is one kind of fetcher write, set up on a fresh account:
// write makes the n-th write with a lease token.
type fencedWrite struct {
	name  string
	setup func(t *testing.T, d *db.DB) (account string, write func(n int, token uint64) error)
}

func fencedWrites() []fencedWrite {
	ctx := context.Background()
	// imap sets up an IMAP account with an INBOX and one message (uid 5).
	imap := func(t *testing.T, d *db.DB) (acct, inbox, msg string) {
		a := mustCreate(t, d, imapAccount("work"))
		mb := mustMailbox(t, d, a.Id, "INBOX", 1)
		m := mustIngest(t, d, imapItem(a.Id, mb.Id, 1, 5, rawMessage(1)))[0].MessageId
		return a.Id, mb.Id, m
	}
	return []fencedWrite{
		{"ClaimAccount", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a, _, _ := imap(t, d)
			return a, func(_ int, tok uint64) error { return d.ClaimAccount(ctx, a, tok) }
		}},
		{"ReportStatus", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a := mustCreate(t, d, pop3Account("pop")).Id
			return a, func(n int, tok uint64) error {
				return d.WithLeaseToken(tok).ReportStatus(ctx, a, &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_RETRYING, Reason: fmt.Sprint("attempt ", n)})
			}
		}},
		{"UpsertMailboxes", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a, _, _ := imap(t, d)
			return a, func(n int, tok uint64) error {
				_, err := d.WithLeaseToken(tok).UpsertMailboxes(ctx, a, []*mailbusv1.UpstreamMailbox{{Name: fmt.Sprint("folder", n), Delimiter: "/"}})
				return err
			}
		}},
		{"SetMailboxSyncState", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a, inbox, _ := imap(t, d)
			return a, func(n int, tok uint64) error {
				return d.WithLeaseToken(tok).SetMailboxSyncState(ctx, inbox, &mailbusv1.MailboxSyncState{Uidvalidity: 1, SyncedUidnext: uint32(10 + n)})
			}
		}},
		{"Ingest IMAP", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a, inbox, _ := imap(t, d)
			return a, func(n int, tok uint64) error {
				it := imapItem(a, inbox, 1, uint32(100+n), rawMessage(100+n))
				it.Meta.LeaseToken = tok
				_, _, err := d.Ingest(ctx, []db.IngestItem{it})
				return err
			}
		}},
		{"Ingest POP3", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a := mustCreate(t, d, pop3Account("pop")).Id
			return a, func(n int, tok uint64) error {
				it := pop3Item(a, fmt.Sprint("uidl-", n), rawMessage(n))
				it.Meta.LeaseToken = tok
				_, _, err := d.Ingest(ctx, []db.IngestItem{it})
				return err
			}
		}},
		{"ApplyUpstreamChanges", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a, inbox, _ := imap(t, d)
			return a, func(n int, tok uint64) error {
				flags := []string{`\Seen`}
				if n%2 == 0 {
					flags = nil
				}
				_, _, _, err := d.WithLeaseToken(tok).ApplyUpstreamChanges(ctx, a, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{
					Upstream: &mailbusv1.UpstreamId{MailboxId: inbox, Uidvalidity: 1, Uid: 5}, Flags: flags}}}})
				return err
			}
		}},
		{"AckWriteBack", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a, _, m := imap(t, d)
			if _, _, err := d.UpdateFlags(ctx, device, a, []string{m}, []string{`\Flagged`}, nil); err != nil {
				t.Fatal(err)
			}
			wb := pending(t, d, a)[0].Id
			return a, func(n int, tok uint64) error {
				return d.AckWriteBack(ctx, &mailbusv1.AckWriteBackRequest{WritebackId: wb, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY, Reason: fmt.Sprint("try ", n), LeaseToken: tok})
			}
		}},
		{"RebindMessages", func(t *testing.T, d *db.DB) (string, func(int, uint64) error) {
			a, inbox, m := imap(t, d)
			return a, func(n int, tok uint64) error {
				_, err := d.WithLeaseToken(tok).RebindMessages(ctx, a, []*mailbusv1.UpstreamPlacement{{MessageId: m, Upstream: &mailbusv1.UpstreamId{MailboxId: inbox, Uidvalidity: 2, Uid: uint32(n + 1)}}})
				return err
			}
		}},
	}
}

// TestLeaseTokenFencing runs every fetcher write through the fencing
// contract of decision 0011: token 0 is accepted while no token is stored;
// a larger token is accepted and raises the stored one; an equal one is
// accepted; a smaller one (0 included) is refused with ErrStaleLease and
// changes nothing (the account state stays put).
func TestLeaseTokenFencing(t *testing.T) {
	steps := []struct {
		token uint64
		stale bool
	}{
		{0, false},  // no token stored yet
		{0, false},  // still none: token 0 stores nothing
		{10, false}, // the first owner claims
		{10, false}, // equal
		{9, true},   // smaller
		{0, true},   // 0 once a token is stored
		{11, false}, // a later owner
		{10, true},  // the earlier owner, after the later one wrote
		{11, false},
		{1 << 40, false}, // large revisions fit
		{11, true},
	}
	for _, w := range fencedWrites() {
		t.Run(w.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, d *db.DB) {
				acct, write := w.setup(t, d)
				for i, s := range steps {
					before, _, err := d.AccountState(context.Background(), acct)
					if err != nil {
						t.Fatal(err)
					}
					err = write(i, s.token)
					if s.stale {
						if !errors.Is(err, db.ErrStaleLease) {
							t.Fatalf("step %d: token %d: got %v, want ErrStaleLease", i, s.token, err)
						}
						if after, _, _ := d.AccountState(context.Background(), acct); after != before {
							t.Fatalf("step %d: refused write moved the account state %d -> %d", i, before, after)
						}
						continue
					}
					if err != nil {
						t.Fatalf("step %d: token %d: %v", i, s.token, err)
					}
				}
			})
		})
	}
}

// TestLeaseTokenFencingIngestStoresNothing: a refused ingest stores no
// message, and ingest of one account under a token does not fence another
// account.
func TestLeaseTokenFencingIngestStoresNothing(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("a")).Id
		b := mustCreate(t, d, pop3Account("b")).Id
		if err := d.ClaimAccount(ctx, a, 7); err != nil {
			t.Fatal(err)
		}
		it := pop3Item(a, "late", rawMessage(1))
		it.Meta.LeaseToken = 6
		if _, _, err := d.Ingest(ctx, []db.IngestItem{it}); !errors.Is(err, db.ErrStaleLease) {
			t.Fatalf("stale ingest: %v", err)
		}
		n := 0
		if err := d.ListUpstreamIds(ctx, a, "", 100, func(ms []*mailbusv1.UpstreamMessage) error { n += len(ms); return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d messages stored by a refused ingest", n)
		}
		mustIngest(t, d, pop3Item(b, "other", rawMessage(2))) // token 0 on b: b has no token
	})
}

// TestLeaseTokenRaisedWithItsWrite: the token is raised in the write's
// transaction, so a write that fails does not raise it.
func TestLeaseTokenRaisedWithItsWrite(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		m := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1)))[0].MessageId
		if err := d.ClaimAccount(ctx, a.Id, 5); err != nil {
			t.Fatal(err)
		}
		// Token 9 passes the fence, then the rebind fails on an unknown
		// mailbox: the transaction rolls back with the raised token.
		_, err := d.WithLeaseToken(9).RebindMessages(ctx, a.Id, []*mailbusv1.UpstreamPlacement{{MessageId: m, Upstream: &mailbusv1.UpstreamId{MailboxId: "999999", Uidvalidity: 2, Uid: 1}}})
		if !errors.Is(err, db.ErrNotFound) {
			t.Fatalf("rebind to an unknown mailbox: %v", err)
		}
		if err := d.ClaimAccount(ctx, a.Id, 8); err != nil {
			t.Fatalf("token 8 after a failed write with 9: %v", err)
		}
		if err := d.ClaimAccount(ctx, a.Id, 7); !errors.Is(err, db.ErrStaleLease) {
			t.Fatalf("token 7 after 8: %v", err)
		}
		// Deleting the account drops its token with it.
		if err := d.DeleteAccount(ctx, a.Id); err != nil {
			t.Fatal(err)
		}
	})
}
