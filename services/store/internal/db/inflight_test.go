package db_test

import (
	"context"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// TestMoveAdoptedDuringWriteBackIsNotAwaitingPlacement is issue 17 A in
// the store: a third party moved the message to where a device moves it,
// so the device's move finds it gone from its source, and the sync of
// the destination that the write-back makes adopts the third party's
// copy. The move is then acknowledged APPLIED without a placement. The
// message has a server identity: it must not be left awaiting one, or
// the store ignores that copy's flag changes and expunges for good.
func TestMoveAdoptedDuringWriteBackIsNotAwaitingPlacement(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		sent := mustMailbox(t, d, a.Id, "Sent", 1)
		archive := mustMailbox(t, d, a.Id, "Archive", 2)
		raw := rawMessage(1)
		m := mustIngest(t, d, imapItem(a.Id, sent.Id, 1, 5, raw, `\Seen`))[0].MessageId
		if _, _, err := d.MoveMessages(ctx, device, a.Id, []string{m}, archive.Id); err != nil {
			t.Fatal(err)
		}
		wb := pending(t, d, a.Id)[0]
		// The third party's copy in Archive, synced during the write-back.
		if res := mustIngest(t, d, imapItem(a.Id, archive.Id, 2, 248, raw, `\Seen`)); res[0].Created || res[0].MessageId != m {
			t.Fatalf("ingest of the copy %v, want adoption of %s", res[0], m)
		}
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wb.Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})

		up := &mailbusv1.UpstreamId{MailboxId: archive.Id, Uidvalidity: 2, Uid: 248}
		_, n, deferred, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{Upstream: up, Flags: []string{`\Seen`, `\Flagged`, "$ThirdParty"}}}}})
		if err != nil || n != 1 || len(deferred) != 0 {
			t.Fatalf("third party's flags on the adopted copy: applied %d, deferred %v, %v", n, deferred, err)
		}
		_, n, _, err = d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: archive.Id, Uidvalidity: 2, Uids: []uint32{248}}}}})
		if err != nil || n != 1 {
			t.Fatalf("expunge of the adopted copy: applied %d, %v", n, err)
		}
		if _, err := d.GetMessageSummary(ctx, m); err == nil {
			t.Fatal("the message is still in the store after its expunge")
		}
	})
}

// TestMoveWithoutPlacementStillAwaits: the rule above does not touch a
// move applied without COPYUID whose copy has not been synced yet: its
// old identity's expunge still leaves it alone until the destination's
// sync adopts it.
func TestMoveWithoutPlacementStillAwaits(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		sent := mustMailbox(t, d, a.Id, "Sent", 1)
		archive := mustMailbox(t, d, a.Id, "Archive", 2)
		raw := rawMessage(1)
		m := mustIngest(t, d, imapItem(a.Id, sent.Id, 1, 5, raw))[0].MessageId
		if _, _, err := d.MoveMessages(ctx, device, a.Id, []string{m}, archive.Id); err != nil {
			t.Fatal(err)
		}
		ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: pending(t, d, a.Id)[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})
		if _, n, _, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: sent.Id, Uidvalidity: 1, Uids: []uint32{5}}}}}); err != nil || n != 0 {
			t.Fatalf("expunge of the old identity: applied %d, %v", n, err)
		}
		if res := mustIngest(t, d, imapItem(a.Id, archive.Id, 2, 7, raw)); res[0].Created || res[0].MessageId != m {
			t.Fatalf("ingest of the copy %v, want adoption of %s", res[0], m)
		}
	})
}

// TestDeferredFlagsAreReported: a flag change the store ignores because a
// device's change of the message is in flight is named in the answer, so
// that the fetcher reads it again once that change has settled (issue 17
// B); one it applies, or finds already true, is not.
func TestDeferredFlagsAreReported(t *testing.T) {
	cases := []struct {
		name string
		// device makes the device's change (none: nil) and returns
		// whether it is still in flight when the server's flags arrive.
		device       func(t *testing.T, d *db.DB, acct, msg, archive string)
		wantDeferred bool
	}{
		{name: "settled", wantDeferred: false},
		{name: "flags write-back pending", wantDeferred: true, device: func(t *testing.T, d *db.DB, acct, msg, _ string) {
			if _, _, err := d.UpdateFlags(context.Background(), device, acct, []string{msg}, nil, []string{`\Seen`}); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "move write-back pending", wantDeferred: true, device: func(t *testing.T, d *db.DB, acct, msg, archive string) {
			if _, _, err := d.MoveMessages(context.Background(), device, acct, []string{msg}, archive); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "move awaiting its placement", wantDeferred: true, device: func(t *testing.T, d *db.DB, acct, msg, archive string) {
			if _, _, err := d.MoveMessages(context.Background(), device, acct, []string{msg}, archive); err != nil {
				t.Fatal(err)
			}
			ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: pending(t, d, acct)[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, d *db.DB) {
				ctx := context.Background()
				a := mustCreate(t, d, imapAccount("work"))
				inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
				archive := mustMailbox(t, d, a.Id, "Archive", 2)
				res := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 5, rawMessage(1), `\Seen`), imapItem(a.Id, inbox.Id, 1, 6, rawMessage(2), `\Seen`))
				if tc.device != nil {
					tc.device(t, d, a.Id, res[0].MessageId, archive.Id)
				}
				up := &mailbusv1.UpstreamId{MailboxId: inbox.Id, Uidvalidity: 1, Uid: 5}
				other := &mailbusv1.UpstreamId{MailboxId: inbox.Id, Uidvalidity: 1, Uid: 6}
				_, _, deferred, err := d.ApplyUpstreamChanges(ctx, a.Id, []*mailbusv1.UpstreamChange{
					{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{Upstream: up, Flags: []string{`\Seen`, `\Flagged`}}}},
					{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{Upstream: other, Flags: []string{`\Seen`}}}},
				})
				if err != nil {
					t.Fatal(err)
				}
				got := len(deferred) == 1 && deferred[0].GetUid() == 5 && deferred[0].GetMailboxId() == inbox.Id && deferred[0].GetUidvalidity() == 1
				if got != tc.wantDeferred || (!tc.wantDeferred && len(deferred) != 0) {
					t.Fatalf("deferred %v, want uid 5 deferred: %v", deferred, tc.wantDeferred)
				}
			})
		})
	}
}
