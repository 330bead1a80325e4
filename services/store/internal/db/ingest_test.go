package db_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

func TestIngestIdempotent(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		mb := mustMailbox(t, d, a.Id, "Archive", 7)
		first := mustIngest(t, d, imapItem(a.Id, mb.Id, 7, 1, rawMessage(1), `\Seen`))
		second := mustIngest(t, d, imapItem(a.Id, mb.Id, 7, 1, rawMessage(1), `\Seen`))
		if !first[0].Created || second[0].Created || first[0].MessageId != second[0].MessageId {
			t.Fatalf("first %v second %v", first[0], second[0])
		}
		msgs, _, _, err := d.ListMessages(ctx, mb.Id, 10, "")
		if err != nil || len(msgs) != 1 {
			t.Fatalf("messages: %d %v", len(msgs), err)
		}
		if got := countKind(allEvents(t, d, a.Id), "message.created"); got != 1 {
			t.Fatalf("%d message.created events, want 1", got)
		}
		s := msgs[0]
		if s.Envelope.GetSubject() != "message 1" || len(s.Flags) != 1 || s.Flags[0] != `\Seen` || s.Size != uint64(len(rawMessage(1))) {
			t.Fatalf("summary %v", s)
		}
		// Same UID under a new UIDVALIDITY is another message.
		third := mustIngest(t, d, imapItem(a.Id, mb.Id, 8, 1, rawMessage(1)))
		if !third[0].Created {
			t.Fatal("new uidvalidity did not create a message")
		}
	})
}

func TestIngestPOP3(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		res := mustIngest(t, d, pop3Item(a.Id, "uidl-1", rawMessage(1)), pop3Item(a.Id, "uidl-2", rawMessage(2)), pop3Item(a.Id, "uidl-1", rawMessage(1)))
		if !res[0].Created || !res[1].Created || res[2].Created || res[2].MessageId != res[0].MessageId {
			t.Fatalf("results %v", res)
		}
		var ids []string
		err := d.ListUpstreamIds(ctx, a.Id, "", 1, func(b []*mailbusv1.UpstreamMessage) error {
			for _, m := range b {
				ids = append(ids, m.Upstream.Uidl)
				if m.Size != uint64(len(rawMessage(1))) {
					t.Errorf("size %d", m.Size)
				}
			}
			return nil
		})
		if err != nil || strings.Join(ids, ",") != "uidl-1,uidl-2" {
			t.Fatalf("upstream ids %v %v", ids, err)
		}
	})
}

func TestIngestBadItemsDoNotStopTheBatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		other := mustCreate(t, d, imapAccount("other"))
		mb := mustMailbox(t, d, a.Id, "INBOX", 1)
		otherMb := mustMailbox(t, d, other.Id, "INBOX", 1)
		items := []db.IngestItem{
			imapItem(a.Id, mb.Id, 1, 0, rawMessage(1)),      // no uid
			imapItem(a.Id, otherMb.Id, 1, 5, rawMessage(2)), // another account's mailbox
			{Meta: nil, Raw: rawMessage(3)},                 // no meta
			{Meta: imapItem(a.Id, mb.Id, 1, 9, nil).Meta, Err: db.ErrTooLarge},
			imapItem(a.Id, mb.Id, 1, 10, rawMessage(10)), // fine
		}
		res, _, err := d.Ingest(ctx, items)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 4; i++ {
			if res[i].Error == "" || res[i].Created {
				t.Errorf("item %d: %v, want an error", i, res[i])
			}
		}
		if res[4].Error != "" || !res[4].Created {
			t.Fatalf("good item: %v", res[4])
		}
		msgs, _, _, _ := d.ListMessages(ctx, otherMb.Id, 10, "")
		if len(msgs) != 0 {
			t.Fatal("stored into another account's mailbox")
		}
	})
}

func TestMalformedAndDuplicateBodies(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		garbage := []byte("\x00\xff not a header\nContent-Type: multipart/mixed; boundary=\"x\"\n\n--x\nbroken")
		res := mustIngest(t, d, pop3Item(a.Id, "g", garbage), pop3Item(a.Id, "dup-a", rawMessage(5)), pop3Item(a.Id, "dup-b", rawMessage(5)))
		raw, _, err := d.RawMessage(ctx, res[0].MessageId)
		if err != nil || !bytes.Equal(raw, garbage) {
			t.Fatalf("malformed message not stored byte-exact: %v", err)
		}
		ra, sa, _ := d.RawMessage(ctx, res[1].MessageId)
		rb, sb, _ := d.RawMessage(ctx, res[2].MessageId)
		if !bytes.Equal(ra, rb) || sa.ContentHash != sb.ContentHash || sa.Id == sb.Id {
			t.Fatal("duplicate bodies: want two messages sharing one content hash")
		}
		if n := d.BlobCount(ctx); n != 2 {
			t.Fatalf("%d blobs, want 2 (bodies stored once per hash)", n)
		}
	})
}

func TestIngestTooLarge(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		a := mustCreate(t, d, pop3Account("home"))
		big := bytes.Repeat([]byte("x"), 65<<20)
		res, _, err := d.Ingest(context.Background(), []db.IngestItem{pop3Item(a.Id, "big", big)})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Error == "" || !strings.Contains(res[0].Error, "too large") {
			t.Fatalf("result %v, want too large", res[0])
		}
	})
}

// TestAppendWritesBackOnIMAP: an append to an IMAP account's mailbox is
// recorded as a write-back (on a POP3 account it stays in the store:
// TestPOP3DeviceChangesStayInStore).
func TestAppendWritesBackOnIMAP(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		drafts := mustMailbox(t, d, a.Id, "Drafts", 3)
		m, err := d.AppendMessage(ctx, device, drafts.Id, rawMessage(2), []string{`\draft`}, zeroTime)
		if err != nil {
			t.Fatal(err)
		}
		wbs, err := d.ListPendingWriteBacks(ctx, a.Id, 10)
		if err != nil || len(wbs) != 1 || wbs[0].GetAppend().GetMessageId() != m.Id || wbs[0].DeviceId != "phone" {
			t.Fatalf("write-backs %v %v", wbs, err)
		}
		if got := wbs[0].GetAppend().GetFlags(); len(got) != 1 || got[0] != `\Draft` {
			t.Fatalf("flags %v", got)
		}
	})
}

func TestDeletedPOP3MessageStaysDeleted(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		res := mustIngest(t, d, pop3Item(a.Id, "u1", rawMessage(1)), pop3Item(a.Id, "u2", rawMessage(2)))
		if _, err := d.DeleteMessages(ctx, device, a.Id, []string{res[0].MessageId}); err != nil {
			t.Fatal(err)
		}
		// The fetcher (keep mode) still sees u1 on the server: it is known,
		// and ingesting it again stores nothing.
		var known []string
		err := d.ListUpstreamIds(ctx, a.Id, "", 100, func(b []*mailbusv1.UpstreamMessage) error {
			for _, m := range b {
				known = append(known, m.Upstream.Uidl)
			}
			return nil
		})
		if err != nil || len(known) != 2 {
			t.Fatalf("known uidls %v %v, want u2 and the deleted u1", known, err)
		}
		// With no live message left, the tombstones are still listed.
		if _, err := d.DeleteMessages(ctx, device, a.Id, []string{res[1].MessageId}); err != nil {
			t.Fatal(err)
		}
		known = nil
		if err := d.ListUpstreamIds(ctx, a.Id, "", 100, func(b []*mailbusv1.UpstreamMessage) error {
			for _, m := range b {
				known = append(known, m.Upstream.Uidl)
			}
			return nil
		}); err != nil || len(known) != 2 {
			t.Fatalf("known uidls with no live message: %v %v", known, err)
		}
		again := mustIngest(t, d, pop3Item(a.Id, "u1", rawMessage(1)))
		if again[0].Created || again[0].MessageId != "" {
			t.Fatalf("deleted message ingested again: %v", again[0])
		}
		msgs, _, _, _ := d.ListMessages(ctx, inboxOf(t, d, a.Id).Id, 10, "")
		if len(msgs) != 0 {
			t.Fatalf("%d messages, want 0", len(msgs))
		}
	})
}

// Identities repeated inside one batch, and identities the batch finds
// already stored, tombstoned or awaiting their echo: the per-batch lookups
// (ingest hints) must give the same results as one message at a time.
func TestIngestRepeatsWithinABatch(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		imapAcct := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, imapAcct.Id, "INBOX", 1)
		archive := mustMailbox(t, d, imapAcct.Id, "Archive", 2)
		stored := mustIngest(t, d, imapItem(imapAcct.Id, inbox.Id, 1, 1, rawMessage(1)))[0].MessageId
		moved := mustIngest(t, d, imapItem(imapAcct.Id, inbox.Id, 1, 2, rawMessage(2)))[0].MessageId
		if _, _, err := d.MoveMessages(ctx, device, imapAcct.Id, []string{moved}, archive.Id); err != nil {
			t.Fatal(err)
		}
		pop := mustCreate(t, d, pop3Account("home"))
		gone := mustIngest(t, d, pop3Item(pop.Id, "gone", rawMessage(20)))[0].MessageId
		if _, err := d.DeleteMessages(ctx, device, pop.Id, []string{gone}); err != nil {
			t.Fatal(err)
		}
		res := mustIngest(t, d,
			imapItem(imapAcct.Id, inbox.Id, 1, 1, rawMessage(1)),   // 0: stored before
			imapItem(imapAcct.Id, inbox.Id, 1, 3, rawMessage(3)),   // 1: new
			imapItem(imapAcct.Id, inbox.Id, 1, 3, rawMessage(3)),   // 2: repeat of 1
			imapItem(imapAcct.Id, archive.Id, 2, 7, rawMessage(2)), // 3: the move's echo
			imapItem(imapAcct.Id, archive.Id, 2, 7, rawMessage(2)), // 4: repeat of 3
			pop3Item(pop.Id, "new", rawMessage(21)),                // 5: new
			pop3Item(pop.Id, "new", rawMessage(21)),                // 6: repeat of 5
			pop3Item(pop.Id, "gone", rawMessage(20)),               // 7: tombstoned
		)
		for _, tc := range []struct {
			i       int
			created bool
			id      string // "" for none; "=N" for the id of result N
		}{
			{0, false, stored}, {1, true, ""}, {2, false, "=1"}, {3, false, moved}, {4, false, moved},
			{5, true, ""}, {6, false, "=5"}, {7, false, ""},
		} {
			r := res[tc.i]
			want := tc.id
			if len(want) == 2 && want[0] == '=' {
				want = res[want[1]-'0'].MessageId
			}
			if r.Error != "" || r.Created != tc.created || (!tc.created && r.MessageId != want) || (tc.created && r.MessageId == "") {
				t.Errorf("result %d: %v; want created %v id %q", tc.i, r, tc.created, want)
			}
		}
		for _, mb := range []*struct {
			id   string
			want int
		}{{inbox.Id, 2}, {archive.Id, 1}, {inboxOf(t, d, pop.Id).Id, 1}} {
			msgs, _, _, err := d.ListMessages(ctx, mb.id, 10, "")
			if err != nil || len(msgs) != mb.want {
				t.Errorf("mailbox %s: %d messages, want %d (%v)", mb.id, len(msgs), mb.want, err)
			}
		}
	})
}
