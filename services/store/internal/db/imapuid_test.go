package db_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// The IMAP UIDs and UIDVALIDITYs the store keeps for its IMAP gateway
// (issue 15, decision 0040).

// listByUID lists a whole mailbox in UID order from min, page by page.
func listByUID(t *testing.T, d *db.DB, mailboxID string, min uint32, pageSize int) []*mailbusv1.MessageSummary {
	t.Helper()
	var out []*mailbusv1.MessageSummary
	tok := ""
	for {
		page, next, _, err := d.ListMessagesByIMAPUID(context.Background(), mailboxID, min, pageSize, tok)
		if err != nil {
			t.Fatalf("ListMessagesByIMAPUID: %v", err)
		}
		out = append(out, page...)
		if next == "" {
			return out
		}
		tok = next
	}
}

func uidsOf(msgs []*mailbusv1.MessageSummary) []uint32 {
	out := make([]uint32, len(msgs))
	for i, m := range msgs {
		out[i] = m.ImapUid
	}
	return out
}

func mailboxNamed(t *testing.T, d *db.DB, acct, name string) *mailbusv1.Mailbox {
	t.Helper()
	mbs, _, err := d.ListMailboxes(context.Background(), acct)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mbs {
		if m.Name == name {
			return m
		}
	}
	t.Fatalf("no mailbox %q", name)
	return nil
}

// createdSummaries returns the summaries of the messages an ingest
// created, in batch order.
func createdSummaries(t *testing.T, d *db.DB, res []*mailbusv1.IngestResult) []*mailbusv1.MessageSummary {
	t.Helper()
	var out []*mailbusv1.MessageSummary
	for _, r := range res {
		if !r.Created {
			continue
		}
		s, err := d.GetMessageSummary(context.Background(), r.MessageId)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// idsWithUIDs returns the ids of a mailbox's messages with these UIDs.
func idsWithUIDs(t *testing.T, d *db.DB, mailboxID string, uids ...uint32) []string {
	t.Helper()
	var ids []string
	for _, m := range listByUID(t, d, mailboxID, 0, 100) {
		if slices.Contains(uids, m.ImapUid) {
			ids = append(ids, m.Id)
		}
	}
	if len(ids) != len(uids) {
		t.Fatalf("mailbox %s has %d of the UIDs %v", mailboxID, len(ids), uids)
	}
	return ids
}

// TestIMAPUIDsIncrease: every way into a mailbox (ingest batches, append,
// move) hands out the mailbox's next UIDs, from its UIDNEXT on, and
// advances UIDNEXT past them; a moved message gets a new UID in the
// destination.
func TestIMAPUIDsIncrease(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 7)
		archive := mustMailbox(t, d, a.Id, "Archive", 8)
		ingest := func(uids ...uint32) func(t *testing.T) []*mailbusv1.MessageSummary {
			return func(t *testing.T) []*mailbusv1.MessageSummary {
				var items []db.IngestItem
				for _, u := range uids {
					items = append(items, imapItem(a.Id, inbox.Id, 7, u, rawMessage(int(u))))
				}
				return createdSummaries(t, d, mustIngest(t, d, items...))
			}
		}
		appendTo := func(mailbox string, n int) func(t *testing.T) []*mailbusv1.MessageSummary {
			return func(t *testing.T) []*mailbusv1.MessageSummary {
				m, err := d.AppendMessage(ctx, device, mailbox, rawMessage(n), nil, zeroTime)
				if err != nil {
					t.Fatal(err)
				}
				return []*mailbusv1.MessageSummary{m}
			}
		}
		move := func(from, to string, uids ...uint32) func(t *testing.T) []*mailbusv1.MessageSummary {
			return func(t *testing.T) []*mailbusv1.MessageSummary {
				msgs, _, err := d.MoveMessages(ctx, device, a.Id, idsWithUIDs(t, d, from, uids...), to)
				if err != nil {
					t.Fatal(err)
				}
				return msgs
			}
		}
		for _, step := range []struct {
			name    string
			mailbox *mailbusv1.Mailbox
			do      func(t *testing.T) []*mailbusv1.MessageSummary
			want    []uint32
		}{
			{"first ingest batch", inbox, ingest(1, 2, 3), []uint32{1, 2, 3}},
			{"second batch, with a message stored before", inbox, ingest(3, 4, 5), []uint32{4, 5}},
			{"append", inbox, appendTo(inbox.Id, 100), []uint32{6}},
			{"append to another mailbox", archive, appendTo(archive.Id, 101), []uint32{1}},
			{"move two into it", archive, move(inbox.Id, archive.Id, 1, 2), []uint32{2, 3}},
			{"move one back", inbox, move(archive.Id, inbox.Id, 2), []uint32{7}},
			{"ingest after the moves", inbox, ingest(6), []uint32{8}},
		} {
			before := mailboxNamed(t, d, a.Id, step.mailbox.Name).ImapUidnext
			got := step.do(t)
			if !slices.Equal(uidsOf(got), step.want) {
				t.Fatalf("%s: UIDs %v, want %v", step.name, uidsOf(got), step.want)
			}
			for _, m := range got {
				if m.ImapUid < before {
					t.Errorf("%s: UID %d below the mailbox's UIDNEXT %d before", step.name, m.ImapUid, before)
				}
				if m.MailboxId != step.mailbox.Id {
					t.Errorf("%s: message %s in mailbox %s, want %s", step.name, m.Id, m.MailboxId, step.mailbox.Id)
				}
				if s, err := d.GetMessageSummary(ctx, m.Id); err != nil || s.ImapUid != m.ImapUid {
					t.Errorf("%s: GetMessageSummary %v %v, want UID %d", step.name, s.GetImapUid(), err, m.ImapUid)
				}
			}
			if after := mailboxNamed(t, d, a.Id, step.mailbox.Name).ImapUidnext; after != step.want[len(step.want)-1]+1 {
				t.Errorf("%s: UIDNEXT %d, want %d", step.name, after, step.want[len(step.want)-1]+1)
			}
		}
		// The server's copy of a moved message (the move's echo) is
		// adopted: the message keeps the UID it got when it was moved.
		before := idsWithUIDs(t, d, archive.Id, 3)[0]
		res := mustIngest(t, d, imapItem(a.Id, archive.Id, 8, 50, rawMessage(2)))
		if res[0].Created || res[0].MessageId != before {
			t.Errorf("the echo of a move: %v, want message %s adopted", res[0], before)
		}
		if s, err := d.GetMessageSummary(ctx, before); err != nil || s.ImapUid != 3 {
			t.Errorf("adopted echo: UID %d %v, want 3", s.GetImapUid(), err)
		}
		if next := mailboxNamed(t, d, a.Id, "Archive").ImapUidnext; next != 4 {
			t.Errorf("Archive after adopting an echo: UIDNEXT %d, want 4", next)
		}
		for _, mb := range []*mailbusv1.Mailbox{inbox, archive} {
			uids := uidsOf(listByUID(t, d, mb.Id, 0, 2))
			for i := 1; i < len(uids); i++ {
				if uids[i] <= uids[i-1] {
					t.Errorf("%s: UIDs %v not strictly increasing", mb.Name, uids)
				}
			}
		}
	})
}

// TestIMAPUIDsNeverReused: a UID once handed out is never handed out
// again in its mailbox, also when its message (the one with the largest
// UID) is deleted or moved away, and after the store restarts.
func TestIMAPUIDsNeverReused(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			cfg := b.Config(t)
			open := func() *db.DB {
				d, err := db.Open(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				return d
			}
			d := open()
			defer func() { d.Close() }()
			a := mustCreate(t, d, imapAccount("work"))
			inbox := mustMailbox(t, d, a.Id, "INBOX", 7)
			archive := mustMailbox(t, d, a.Id, "Archive", 8)
			n := 100
			appendOne := func(t *testing.T) uint32 {
				n++
				m, err := d.AppendMessage(ctx, device, inbox.Id, rawMessage(n), nil, zeroTime)
				if err != nil {
					t.Fatal(err)
				}
				return m.ImapUid
			}
			deleteUIDs := func(t *testing.T, uids ...uint32) {
				if _, err := d.DeleteMessages(ctx, device, a.Id, idsWithUIDs(t, d, inbox.Id, uids...)); err != nil {
					t.Fatal(err)
				}
			}
			for _, step := range []struct {
				name    string
				restart bool
				do      func(t *testing.T) uint32 // the UID the step's last message got in the inbox
				want    uint32
			}{
				{"ingest three", false, func(t *testing.T) uint32 {
					got := createdSummaries(t, d, mustIngest(t, d, imapItem(a.Id, inbox.Id, 7, 1, rawMessage(1)), imapItem(a.Id, inbox.Id, 7, 2, rawMessage(2)), imapItem(a.Id, inbox.Id, 7, 3, rawMessage(3))))
					return got[2].ImapUid
				}, 3},
				{"delete the largest UID, append", false, func(t *testing.T) uint32 {
					deleteUIDs(t, 3)
					return appendOne(t)
				}, 4},
				{"restart, delete the largest UID, append", true, func(t *testing.T) uint32 {
					deleteUIDs(t, 4)
					return appendOne(t)
				}, 5},
				{"move the largest UID out and back", false, func(t *testing.T) uint32 {
					if _, _, err := d.MoveMessages(ctx, device, a.Id, idsWithUIDs(t, d, inbox.Id, 5), archive.Id); err != nil {
						t.Fatal(err)
					}
					back, _, err := d.MoveMessages(ctx, device, a.Id, idsWithUIDs(t, d, archive.Id, 1), inbox.Id)
					if err != nil {
						t.Fatal(err)
					}
					return back[0].ImapUid
				}, 6},
				{"restart, delete every message, ingest", true, func(t *testing.T) uint32 {
					deleteUIDs(t, uidsOf(listByUID(t, d, inbox.Id, 0, 100))...)
					got := createdSummaries(t, d, mustIngest(t, d, imapItem(a.Id, inbox.Id, 7, 4, rawMessage(4))))
					return got[0].ImapUid
				}, 7},
				{"restart, append", true, appendOne, 8},
			} {
				if step.restart {
					d.Close()
					d = open()
				}
				if got := step.do(t); got != step.want {
					t.Fatalf("%s: UID %d, want %d", step.name, got, step.want)
				}
				if next := mailboxNamed(t, d, a.Id, "INBOX").ImapUidnext; next != step.want+1 {
					t.Fatalf("%s: UIDNEXT %d, want %d", step.name, next, step.want+1)
				}
			}
		})
	}
}

// TestIMAPUIDValidity: every mailbox has a nonzero UIDVALIDITY that stays
// across renames and store restarts, and that no other mailbox of the
// store, of any account, has had: two accounts created in the same second
// get different ones (a gateway login that comes to name the other
// account must not keep its cache). A mailbox deleted and created again,
// and the inbox of an account deleted and created again under the same
// name, get a larger one, however the clock moves.
func TestIMAPUIDValidity(t *testing.T) {
	clocks := []struct {
		name string
		now  func() func() time.Time
	}{
		{"clock runs", func() func() time.Time { return nil }},
		{"clock stands still", func() func() time.Time {
			return func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }
		}},
		{"clock goes back", func() func() time.Time {
			var mu sync.Mutex
			t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			return func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				t0 = t0.Add(-time.Hour)
				return t0
			}
		}},
	}
	for _, b := range dbtest.Backends() {
		for _, clock := range clocks {
			t.Run(b.Name+"/"+clock.name, func(t *testing.T) {
				ctx := context.Background()
				cfg := b.Config(t)
				cfg.Now = clock.now()
				d, err := db.Open(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer func() { d.Close() }()
				seen := map[uint32]string{}
				check := func(what string, mb *mailbusv1.Mailbox) uint32 {
					t.Helper()
					v := mb.ImapUidvalidity
					if v == 0 {
						t.Fatalf("%s: UIDVALIDITY 0", what)
					}
					if other, ok := seen[v]; ok {
						t.Fatalf("%s: UIDVALIDITY %d, also that of %s", what, v, other)
					}
					seen[v] = what
					return v
				}
				a := mustCreate(t, d, imapAccount("work"))
				inbox := check("inbox", inboxOf(t, d, a.Id))
				other := mustCreate(t, d, pop3Account("home"))
				check("inbox of another account", inboxOf(t, d, other.Id))
				otherFolder, err := d.CreateMailbox(ctx, device, other.Id, "Projects")
				if err != nil {
					t.Fatal(err)
				}
				check("Projects of another account", otherFolder)
				created, err := d.CreateMailbox(ctx, device, a.Id, "Projects")
				if err != nil {
					t.Fatal(err)
				}
				projects := check("Projects", created)
				if created.ImapUidnext != 1 {
					t.Errorf("new mailbox: UIDNEXT %d, want 1", created.ImapUidnext)
				}
				renamed, err := d.RenameMailbox(ctx, device, created.Id, "Plans")
				if err != nil || renamed.ImapUidvalidity != projects {
					t.Fatalf("renamed: UIDVALIDITY %d (%v), want %d", renamed.GetImapUidvalidity(), err, projects)
				}
				d.Close()
				if d, err = db.Open(ctx, cfg); err != nil {
					t.Fatal(err)
				}
				if got := inboxOf(t, d, a.Id).ImapUidvalidity; got != inbox {
					t.Errorf("inbox after a restart: UIDVALIDITY %d, want %d", got, inbox)
				}
				if got := mailboxNamed(t, d, a.Id, "Plans").ImapUidvalidity; got != projects {
					t.Errorf("Plans after a restart: UIDVALIDITY %d, want %d", got, projects)
				}
				if err := d.DeleteMailbox(ctx, device, created.Id); err != nil {
					t.Fatal(err)
				}
				again, err := d.CreateMailbox(ctx, device, a.Id, "Plans")
				if err != nil {
					t.Fatal(err)
				}
				if v := check("Plans created again", again); v <= projects {
					t.Errorf("Plans created again: UIDVALIDITY %d, want more than %d", v, projects)
				}
				if err := d.DeleteAccount(ctx, a.Id); err != nil {
					t.Fatal(err)
				}
				a2 := mustCreate(t, d, imapAccount("work"))
				if v := check("inbox of the account created again", inboxOf(t, d, a2.Id)); v <= again.ImapUidvalidity {
					t.Errorf("inbox of the account created again: UIDVALIDITY %d, want more than %d", v, again.ImapUidvalidity)
				}
			})
		}
	}
}

// TestIMAPUIDsTwoReplicas: two stores on one PostgreSQL appending,
// ingesting and moving into the same mailboxes at once never hand out a
// UID twice, and leave UIDNEXT above every UID handed out.
func TestIMAPUIDsTwoReplicas(t *testing.T) {
	var pg dbtest.Backend
	for _, b := range dbtest.Backends() {
		if b.Name == "postgres" {
			pg = b
		}
	}
	ctx := context.Background()
	cfg := pg.Config(t)
	var replicas []*db.DB
	for range 2 {
		d, err := db.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		replicas = append(replicas, d)
	}
	a := mustCreate(t, replicas[0], pop3Account("shared"))
	inbox := inboxOf(t, replicas[0], a.Id)
	kept, err := replicas[0].CreateMailbox(ctx, device, a.Id, "Kept")
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 30
	var mu sync.Mutex
	handedOut := map[string][]uint32{} // mailbox id: every UID handed out there
	record := func(ms ...*mailbusv1.MessageSummary) {
		mu.Lock()
		defer mu.Unlock()
		for _, m := range ms {
			handedOut[m.MailboxId] = append(handedOut[m.MailboxId], m.ImapUid)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for r, d := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				m, err := d.AppendMessage(ctx, device, inbox.Id, rawMessage(10000*r+i), nil, zeroTime)
				if err != nil {
					errs <- fmt.Errorf("replica %d append: %w", r, err)
					return
				}
				record(m)
				moved, _, err := d.MoveMessages(ctx, device, a.Id, []string{m.Id}, kept.Id)
				if err != nil {
					errs <- fmt.Errorf("replica %d move: %w", r, err)
					return
				}
				record(moved...)
				res, _, err := d.Ingest(ctx, []db.IngestItem{
					pop3Item(a.Id, fmt.Sprintf("r%d-%d-a", r, i), rawMessage(20000+10000*r+i)),
					pop3Item(a.Id, fmt.Sprintf("r%d-%d-b", r, i), rawMessage(50000+10000*r+i)),
				})
				if err != nil {
					errs <- fmt.Errorf("replica %d ingest: %w", r, err)
					return
				}
				for _, x := range res {
					s, err := d.GetMessageSummary(ctx, x.MessageId)
					if err != nil {
						errs <- fmt.Errorf("replica %d ingest result %v: %w", r, x, err)
						return
					}
					record(s)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for _, mb := range []*mailbusv1.Mailbox{inbox, kept} {
		uids := handedOut[mb.Id]
		want := 2 * rounds
		if mb.Id == inbox.Id {
			want = 2 * rounds * 3 // appended (then moved away) and two ingested per round
		}
		if len(uids) != want {
			t.Fatalf("%s: %d UIDs handed out, want %d", mb.Name, len(uids), want)
		}
		slices.Sort(uids)
		if dup := slices.Compact(slices.Clone(uids)); len(dup) != len(uids) {
			t.Errorf("%s: a UID handed out twice: %v", mb.Name, uids)
		}
		if next := mailboxNamed(t, replicas[1], a.Id, mb.Name).ImapUidnext; next != uids[len(uids)-1]+1 {
			t.Errorf("%s: UIDNEXT %d, want %d", mb.Name, next, uids[len(uids)-1]+1)
		}
	}
}

// TestIMAPUIDValidityTwoReplicas: two stores on one PostgreSQL creating
// accounts and mailboxes and deleting accounts at once, with a clock that
// stands still, never hand out one UIDVALIDITY twice in the store.
func TestIMAPUIDValidityTwoReplicas(t *testing.T) {
	var pg dbtest.Backend
	for _, b := range dbtest.Backends() {
		if b.Name == "postgres" {
			pg = b
		}
	}
	ctx := context.Background()
	cfg := pg.Config(t)
	cfg.Now = func() time.Time { return time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC) }
	var replicas []*db.DB
	for range 2 {
		d, err := db.Open(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		replicas = append(replicas, d)
	}
	const rounds = 20
	var mu sync.Mutex
	handedOut := map[uint32]string{}
	var dups []string
	record := func(what string, mb *mailbusv1.Mailbox) {
		mu.Lock()
		defer mu.Unlock()
		if other, ok := handedOut[mb.ImapUidvalidity]; ok {
			dups = append(dups, fmt.Sprintf("%s and %s: %d", other, what, mb.ImapUidvalidity))
		}
		handedOut[mb.ImapUidvalidity] = what
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for r, d := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			prev := ""
			for i := range rounds {
				name := fmt.Sprintf("r%d-%d", r, i)
				a, err := d.CreateAccount(ctx, pop3Account(name))
				if err != nil {
					errs <- fmt.Errorf("replica %d create account: %w", r, err)
					return
				}
				mbs, _, err := d.ListMailboxes(ctx, a.Id)
				if err != nil || len(mbs) != 1 {
					errs <- fmt.Errorf("replica %d list mailboxes: %v %w", r, mbs, err)
					return
				}
				record(name+" INBOX", mbs[0])
				mb, err := d.CreateMailbox(ctx, device, a.Id, "Folder")
				if err != nil {
					errs <- fmt.Errorf("replica %d create mailbox: %w", r, err)
					return
				}
				record(name+" Folder", mb)
				if prev != "" {
					if err := d.DeleteAccount(ctx, prev); err != nil {
						errs <- fmt.Errorf("replica %d delete account: %w", r, err)
						return
					}
				}
				prev = a.Id
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(dups) > 0 {
		t.Errorf("UIDVALIDITYs handed out twice: %v", dups)
	}
	if len(handedOut)+len(dups) != 2*rounds*2 {
		t.Errorf("%d UIDVALIDITYs recorded, want %d", len(handedOut)+len(dups), 2*rounds*2)
	}
}

// TestIMAPUIDsInEvents: the message and mailbox events carry the UIDs and
// the UIDVALIDITY, as the API's answers do; a move's event also carries
// the UID the message had before, and a deletion's the UID it had.
func TestIMAPUIDsInEvents(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 7)
		mustIngest(t, d, imapItem(a.Id, inbox.Id, 7, 1, rawMessage(1)), imapItem(a.Id, inbox.Id, 7, 2, rawMessage(2)))
		folder, err := d.CreateMailbox(ctx, device, a.Id, "Folder")
		if err != nil {
			t.Fatal(err)
		}
		ids := idsWithUIDs(t, d, inbox.Id, 1, 2)
		moved, _, err := d.MoveMessages(ctx, device, a.Id, ids[1:], folder.Id)
		if err != nil {
			t.Fatal(err)
		}
		flagged, _, err := d.UpdateFlags(ctx, device, a.Id, ids[:1], []string{`\Flagged`}, nil)
		if err != nil {
			t.Fatal(err)
		}
		appended, err := d.AppendMessage(ctx, device, folder.Id, rawMessage(3), nil, zeroTime)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.RenameMailbox(ctx, device, folder.Id, "Renamed"); err != nil {
			t.Fatal(err)
		}
		if _, err := d.DeleteMessages(ctx, device, a.Id, ids[:1]); err != nil {
			t.Fatal(err)
		}
		if moved[0].ImapUid != 1 || flagged[0].ImapUid != 1 || appended.ImapUid != 2 {
			t.Fatalf("answers: moved UID %d, flagged %d, appended %d; want 1, 1, 2", moved[0].ImapUid, flagged[0].ImapUid, appended.ImapUid)
		}
		uidvalidity := map[string]uint32{"INBOX": inbox.ImapUidvalidity, "Folder": folder.ImapUidvalidity, "Renamed": folder.ImapUidvalidity}
		var got []string
		for _, e := range allEvents(t, d, a.Id) {
			var mb *mailbusv1.Mailbox
			switch p := e.Payload.(type) {
			case *mailbusv1.Event_MessageCreated:
				got = append(got, fmt.Sprintf("created in %s, UID %d", p.MessageCreated.Message.MailboxId, p.MessageCreated.Message.ImapUid))
			case *mailbusv1.Event_MessageUpdated:
				u := p.MessageUpdated
				got = append(got, fmt.Sprintf("updated in %s, UID %d, before in %q UID %d", u.Message.MailboxId, u.Message.ImapUid, u.PreviousMailboxId, u.PreviousImapUid))
			case *mailbusv1.Event_MessageDeleted:
				got = append(got, fmt.Sprintf("deleted from %s, UID %d", p.MessageDeleted.MailboxId, p.MessageDeleted.ImapUid))
			case *mailbusv1.Event_MailboxCreated:
				mb = p.MailboxCreated.Mailbox
			case *mailbusv1.Event_MailboxUpdated:
				mb = p.MailboxUpdated.Mailbox
			}
			if mb != nil {
				if mb.ImapUidvalidity == 0 || mb.ImapUidvalidity != uidvalidity[mb.Name] {
					t.Errorf("%s event of %s: UIDVALIDITY %d, want %d", kindOf(e), mb.Name, mb.ImapUidvalidity, uidvalidity[mb.Name])
				}
				got = append(got, fmt.Sprintf("%s %s, UIDNEXT %d", kindOf(e), mb.Name, mb.ImapUidnext))
			}
		}
		want := []string{
			"mailbox.created INBOX, UIDNEXT 1",
			"mailbox.updated INBOX, UIDNEXT 1", // the server's delimiter
			"created in " + inbox.Id + ", UID 1",
			"created in " + inbox.Id + ", UID 2",
			"mailbox.created Folder, UIDNEXT 1",
			"updated in " + folder.Id + ", UID 1, before in \"" + inbox.Id + "\" UID 2", // moved
			"updated in " + inbox.Id + ", UID 1, before in \"\" UID 0",                  // flagged
			"created in " + folder.Id + ", UID 2",                                       // appended
			"mailbox.updated Renamed, UIDNEXT 3",
			"deleted from " + inbox.Id + ", UID 1",
		}
		if !slices.Equal(got, want) {
			t.Errorf("events:\n%q\nwant\n%q", got, want)
		}
	})
}

// TestListMessagesByIMAPUID: the UID order from a UID, paged, with its
// own page tokens.
func TestListMessagesByIMAPUID(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		inbox := inboxOf(t, d, a.Id)
		var items []db.IngestItem
		for i := 1; i <= 7; i++ {
			items = append(items, pop3Item(a.Id, fmt.Sprint("u", i), rawMessage(i)))
		}
		mustIngest(t, d, items...)
		if _, err := d.DeleteMessages(ctx, device, a.Id, idsWithUIDs(t, d, inbox.Id, 3)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name     string
			min      uint32
			pageSize int
			want     [][]uint32
		}{
			{"from the first", 0, 3, [][]uint32{{1, 2, 4}, {5, 6, 7}}},
			{"from a deleted UID", 3, 10, [][]uint32{{4, 5, 6, 7}}},
			{"from a UID, two a page", 4, 2, [][]uint32{{4, 5}, {6, 7}}},
			{"one a page", 6, 1, [][]uint32{{6}, {7}}},
			{"from UIDNEXT", 8, 5, [][]uint32{{}}},
		} {
			var got [][]uint32
			tok := ""
			for {
				page, next, state, err := d.ListMessagesByIMAPUID(ctx, inbox.Id, tc.min, tc.pageSize, tok)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if state == 0 {
					t.Errorf("%s: state 0", tc.name)
				}
				got = append(got, uidsOf(page))
				if next == "" {
					break
				}
				tok = next
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("%s: pages %v, want %v", tc.name, got, tc.want)
			}
		}
		_, dateToken, _, err := d.ListMessages(ctx, inbox.Id, 1, "")
		if err != nil || dateToken == "" {
			t.Fatalf("ListMessages: %q %v", dateToken, err)
		}
		_, uidToken, _, err := d.ListMessagesByIMAPUID(ctx, inbox.Id, 0, 1, "")
		if err != nil || uidToken == "" {
			t.Fatalf("ListMessagesByIMAPUID: %q %v", uidToken, err)
		}
		for _, tc := range []struct {
			name string
			list func() error
		}{
			{"a date token in the UID order", func() error {
				_, _, _, err := d.ListMessagesByIMAPUID(ctx, inbox.Id, 0, 1, dateToken)
				return err
			}},
			{"a UID token in the date order", func() error {
				_, _, _, err := d.ListMessages(ctx, inbox.Id, 1, uidToken)
				return err
			}},
			{"garbage", func() error {
				_, _, _, err := d.ListMessagesByIMAPUID(ctx, inbox.Id, 0, 1, "!!")
				return err
			}},
		} {
			if err := tc.list(); !errors.Is(err, db.ErrInvalid) {
				t.Errorf("%s: %v, want ErrInvalid", tc.name, err)
			}
		}
		if _, _, _, err := d.ListMessagesByIMAPUID(ctx, "999999", 0, 1, ""); !errors.Is(err, db.ErrNotFound) {
			t.Errorf("unknown mailbox: %v, want ErrNotFound", err)
		}
	})
}

// TestPOP3DeviceChangesStayInStore: on a POP3 account a device appends
// (a sent copy), makes local folders, moves, flags and deletes; every
// change is committed with the device as origin and a UID where a message
// lands, and nothing is recorded to go upstream.
func TestPOP3DeviceChangesStayInStore(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		inbox := inboxOf(t, d, a.Id)
		mustIngest(t, d, pop3Item(a.Id, "u1", rawMessage(1)), pop3Item(a.Id, "u2", rawMessage(2)))
		sent, err := d.CreateMailbox(ctx, device, a.Id, "Sent")
		if err != nil {
			t.Fatal(err)
		}
		if !sent.LocalOnly {
			t.Errorf("a POP3 account's folder: local_only false")
		}
		appended, err := d.AppendMessage(ctx, device, sent.Id, rawMessage(3), []string{`\Seen`}, zeroTime)
		if err != nil {
			t.Fatalf("append to a POP3 account's folder: %v", err)
		}
		if appended.ImapUid != 1 || appended.MailboxId != sent.Id {
			t.Errorf("appended: UID %d in %s, want 1 in %s", appended.ImapUid, appended.MailboxId, sent.Id)
		}
		inInbox, err := d.AppendMessage(ctx, device, inbox.Id, rawMessage(4), nil, zeroTime)
		if err != nil || inInbox.ImapUid != 3 {
			t.Fatalf("append to a POP3 inbox: UID %d %v, want 3", inInbox.GetImapUid(), err)
		}
		ids := idsWithUIDs(t, d, inbox.Id, 1, 2)
		moved, _, err := d.MoveMessages(ctx, device, a.Id, ids[:1], sent.Id)
		if err != nil || moved[0].ImapUid != 2 {
			t.Fatalf("move: %v %v, want UID 2", moved, err)
		}
		if _, _, err := d.UpdateFlags(ctx, device, a.Id, ids, []string{`\Flagged`}, nil); err != nil {
			t.Fatalf("flags: %v", err)
		}
		if _, err := d.RenameMailbox(ctx, device, sent.Id, "Sent Items"); err != nil {
			t.Fatalf("rename: %v", err)
		}
		if _, err := d.DeleteMessages(ctx, device, a.Id, []string{appended.Id}); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if wbs, err := d.ListPendingWriteBacks(ctx, a.Id, 100); err != nil || len(wbs) != 0 {
			t.Errorf("write-backs %v %v, want none", wbs, err)
		}
		var created int
		for _, e := range allEvents(t, d, a.Id) {
			if c := e.GetMessageCreated(); c != nil && e.Origin.GetKind() == mailbusv1.OriginKind_ORIGIN_KIND_DEVICE {
				if e.Origin.DeviceId != "phone" || c.Message.ImapUid == 0 {
					t.Errorf("appended message's event: origin %v, UID %d", e.Origin, c.Message.ImapUid)
				}
				created++
			}
		}
		if created != 2 {
			t.Errorf("%d message.created events of the device, want 2", created)
		}
		if err := d.DeleteMailbox(ctx, device, sent.Id); err != nil {
			t.Fatalf("delete folder: %v", err)
		}
		if got := uidsOf(listByUID(t, d, inbox.Id, 0, 10)); !slices.Equal(got, []uint32{2, 3}) {
			t.Errorf("inbox UIDs %v, want [2 3]", got)
		}
	})
}

// TestIMAPUIDMigration: the migration numbers the messages of a database
// from before it in id order per mailbox, sets each mailbox's UIDNEXT
// above them and gives each mailbox of the store, of every account, a
// UIDVALIDITY of its own; the next message continues the numbering and
// the next mailbox gets a UIDVALIDITY above them all.
func TestIMAPUIDMigration(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			cfg := b.Config(t)
			old, err := db.OpenAtVersion(ctx, cfg, 9)
			if err != nil {
				t.Fatal(err)
			}
			for _, st := range []struct {
				q    string
				args []any
			}{
				{`INSERT INTO accounts (id, name, protocol, config, created_at, updated_at) VALUES (1, 'home', 2, ?, 0, 0)`, []any{[]byte{}}},
				{`INSERT INTO mailboxes (id, account_id, name, role, modseq) VALUES (1, 1, 'INBOX', 1, 1)`, nil},
				{`INSERT INTO mailboxes (id, account_id, name, modseq) VALUES (2, 1, 'Kept', 1)`, nil},
				{`INSERT INTO mailboxes (id, account_id, name, modseq) VALUES (3, 1, 'Empty', 1)`, nil},
				{`INSERT INTO accounts (id, name, protocol, config, created_at, updated_at) VALUES (2, 'work', 2, ?, 0, 0)`, []any{[]byte{}}},
				{`INSERT INTO mailboxes (id, account_id, name, role, modseq) VALUES (4, 2, 'INBOX', 1, 1)`, nil},
				{`INSERT INTO blobs (hash, size, data, created_at) VALUES ('h', 1, ?, 0)`, []any{[]byte{}}},
			} {
				if err := old.Exec(ctx, st.q, st.args...); err != nil {
					t.Fatalf("%s: %v", st.q, err)
				}
			}
			// Ids interleaved between the mailboxes, and not in date order.
			for id, mb := range map[int]int{10: 1, 11: 2, 12: 1, 13: 1, 14: 2} {
				if err := old.Exec(ctx, `INSERT INTO messages (id, account_id, mailbox_id, uidl, blob_hash, size, internal_date, summary, modseq, created_modseq) VALUES (?, 1, ?, ?, 'h', 1, ?, ?, 1, 1)`,
					id, mb, fmt.Sprint("u", id), 100-id, []byte{}); err != nil {
					t.Fatal(err)
				}
			}
			old.Close()
			d, err := db.Open(ctx, cfg)
			if err != nil {
				t.Fatalf("migrate: %v", err)
			}
			defer d.Close()
			for _, tc := range []struct {
				mailbox string
				ids     []string
				uids    []uint32
			}{
				{"1", []string{"10", "12", "13"}, []uint32{1, 2, 3}},
				{"2", []string{"11", "14"}, []uint32{1, 2}},
				{"3", nil, nil},
			} {
				got := listByUID(t, d, tc.mailbox, 0, 10)
				var ids []string
				for _, m := range got {
					ids = append(ids, m.Id)
				}
				if !slices.Equal(ids, tc.ids) || !slices.Equal(uidsOf(got), tc.uids) {
					t.Errorf("mailbox %s: ids %v UIDs %v, want %v %v", tc.mailbox, ids, uidsOf(got), tc.ids, tc.uids)
				}
			}
			mbs, _, err := d.ListMailboxes(ctx, "1")
			if err != nil {
				t.Fatal(err)
			}
			next := map[string]uint32{"INBOX": 4, "Kept": 3, "Empty": 1}
			for _, mb := range mbs {
				if mb.ImapUidvalidity == 0 || mb.ImapUidnext != next[mb.Name] {
					t.Errorf("%s: UIDVALIDITY %d UIDNEXT %d, want nonzero and %d", mb.Name, mb.ImapUidvalidity, mb.ImapUidnext, next[mb.Name])
				}
			}
			mbs = append(mbs, inboxOf(t, d, "2"))
			var largest uint32
			seen := map[uint32]string{}
			for _, mb := range mbs {
				if other, ok := seen[mb.ImapUidvalidity]; ok {
					t.Errorf("mailbox %s: UIDVALIDITY %d, also that of mailbox %s", mb.Id, mb.ImapUidvalidity, other)
				}
				seen[mb.ImapUidvalidity] = mb.Id
				largest = max(largest, mb.ImapUidvalidity)
			}
			got := createdSummaries(t, d, mustIngest(t, d, pop3Item("1", "new", rawMessage(1))))
			if got[0].ImapUid != 4 {
				t.Errorf("first message after the migration: UID %d, want 4", got[0].ImapUid)
			}
			again, err := d.CreateMailbox(ctx, device, "1", "New")
			if err != nil {
				t.Fatal(err)
			}
			if again.ImapUidvalidity <= largest {
				t.Errorf("mailbox created after the migration: UIDVALIDITY %d, want more than %d", again.ImapUidvalidity, largest)
			}
		})
	}
}

// TestIMAPUIDsOfMovesBack: a message the store moves back to the mailbox
// it is in upstream (after a failed move write-back, or when the mailbox
// a device moved it to is deleted before the move reached the server)
// gets a new UID there, above the one it had before it left, and the
// event of the move back names the UID it had in the mailbox it left.
func TestIMAPUIDsOfMovesBack(t *testing.T) {
	for _, tc := range []struct {
		name string
		back func(t *testing.T, d *db.DB, archive *mailbusv1.Mailbox)
	}{
		{"failed move write-back", func(t *testing.T, d *db.DB, archive *mailbusv1.Mailbox) {
			wbs := pending(t, d, archive.AccountId)
			if len(wbs) != 1 || wbs[0].GetMove() == nil {
				t.Fatalf("write-backs %v, want one move", wbs)
			}
			ack(t, d, &mailbusv1.AckWriteBackRequest{WritebackId: wbs[0].Id, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED, Reason: "refused"})
		}},
		{"mailbox deleted", func(t *testing.T, d *db.DB, archive *mailbusv1.Mailbox) {
			if err := d.DeleteMailbox(context.Background(), device, archive.Id); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, d *db.DB) {
				ctx := context.Background()
				a := mustCreate(t, d, imapAccount("work"))
				inbox := mustMailbox(t, d, a.Id, "INBOX", 7)
				archive := mustMailbox(t, d, a.Id, "Archive", 8)
				mustIngest(t, d, imapItem(a.Id, inbox.Id, 7, 1, rawMessage(1)), imapItem(a.Id, inbox.Id, 7, 2, rawMessage(2)))
				id := idsWithUIDs(t, d, inbox.Id, 2)[0]
				moved, _, err := d.MoveMessages(ctx, device, a.Id, []string{id}, archive.Id)
				if err != nil || moved[0].ImapUid != 1 {
					t.Fatalf("move: %v %v, want UID 1 in Archive", moved, err)
				}
				tc.back(t, d, archive)
				s, err := d.GetMessageSummary(ctx, id)
				if err != nil {
					t.Fatal(err)
				}
				if s.MailboxId != inbox.Id || s.ImapUid != 3 {
					t.Errorf("moved back: UID %d in %s, want UID 3 (not 2, which it had) in the inbox %s", s.ImapUid, s.MailboxId, inbox.Id)
				}
				if got := uidsOf(listByUID(t, d, inbox.Id, 0, 10)); !slices.Equal(got, []uint32{1, 3}) {
					t.Errorf("inbox UIDs %v, want [1 3]", got)
				}
				if next := mailboxNamed(t, d, a.Id, "INBOX").ImapUidnext; next != 4 {
					t.Errorf("inbox UIDNEXT %d, want 4", next)
				}
				var back *mailbusv1.MessageUpdated
				for _, e := range allEvents(t, d, a.Id) {
					if u := e.GetMessageUpdated(); u != nil && u.Message.Id == id && u.Message.MailboxId == inbox.Id {
						back = u
					}
				}
				if back == nil || back.Message.ImapUid != 3 || back.PreviousMailboxId != archive.Id || back.PreviousImapUid != 1 {
					t.Errorf("event of the move back %v, want UID 3, previously UID 1 in %s", back, archive.Id)
				}
			})
		})
	}
}

// TestUpsertMailboxesIMAPUIDs: UpsertMailboxes, which reads mailboxes by
// name, answers (and announces in mailbox.updated) each mailbox's current
// UIDNEXT and its unchanged UIDVALIDITY; a mailbox read by name or by id
// in a transaction that has handed out UIDs shows the UIDNEXT it will
// commit (the overlay), and the rolled-back transaction leaves the stored
// one.
func TestUpsertMailboxesIMAPUIDs(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 7)
		mustIngest(t, d, imapItem(a.Id, inbox.Id, 7, 1, rawMessage(1)), imapItem(a.Id, inbox.Id, 7, 2, rawMessage(2)), imapItem(a.Id, inbox.Id, 7, 3, rawMessage(3)))
		got, err := d.UpsertMailboxes(ctx, a.Id, []*mailbusv1.UpstreamMailbox{
			{Name: "INBOX", Delimiter: ".", Uidvalidity: 7}, // a new delimiter: mailbox.updated
			{Name: "Archive", Delimiter: ".", Uidvalidity: 8},
		})
		if err != nil {
			t.Fatal(err)
		}
		if mb := got[0].Mailbox; mb.ImapUidnext != 4 || mb.ImapUidvalidity != inbox.ImapUidvalidity {
			t.Errorf("UpsertMailboxes' inbox: UIDNEXT %d UIDVALIDITY %d, want 4 %d", mb.ImapUidnext, mb.ImapUidvalidity, inbox.ImapUidvalidity)
		}
		if mb := got[1].Mailbox; mb.ImapUidnext != 1 || mb.ImapUidvalidity <= inbox.ImapUidvalidity {
			t.Errorf("UpsertMailboxes' new Archive: UIDNEXT %d UIDVALIDITY %d, want 1 and more than %d", mb.ImapUidnext, mb.ImapUidvalidity, inbox.ImapUidvalidity)
		}
		evs := allEvents(t, d, a.Id)
		last := evs[len(evs)-2].GetMailboxUpdated() // then Archive's mailbox.created
		if last == nil || last.Mailbox.Name != "INBOX" || last.Mailbox.Delimiter != "." || last.Mailbox.ImapUidnext != 4 {
			t.Errorf("event %v, want the inbox's mailbox.updated with UIDNEXT 4", evs[len(evs)-2])
		}
		byID, byName, err := d.UIDNextReadInTx(ctx, inbox.Id, 2)
		if err != nil {
			t.Fatal(err)
		}
		if byID != 6 || byName != 6 {
			t.Errorf("in a transaction that handed out UIDs 4 and 5: UIDNEXT %d by id, %d by name, want 6", byID, byName)
		}
		if next := mailboxNamed(t, d, a.Id, "INBOX").ImapUidnext; next != 4 {
			t.Errorf("after the rollback: UIDNEXT %d, want 4", next)
		}
	})
}
