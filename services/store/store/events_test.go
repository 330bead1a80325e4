package store_test

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestIngestTwiceOneMessageOneEvent ingests the same upstream message twice,
// as a fetcher that crashed after sending it and retried would, for a POP3
// account (identity: UIDL) and an IMAP account (identity: mailbox,
// UIDVALIDITY, UID). The store keeps one message, answers the retry with
// created=false and the same id, and JetStream gets exactly one
// message.created event for it, on its subject, with its id as Nats-Msg-Id.
func TestIngestTwiceOneMessageOneEvent(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{})

		t.Run("pop3", func(t *testing.T) {
			acct := e.createAccount(t, pop3Account("pop"))
			inbox := e.inbox(t, acct.Id)
			raw := testMessage(1)
			first := e.mustIngest(t, pop3Item(acct.Id, "UIDL-0001", raw))
			// The retry, on a new stream; and in one batch the same message
			// twice (a fetcher resending within a batch).
			second := e.mustIngest(t, pop3Item(acct.Id, "UIDL-0001", raw))
			third := e.mustIngest(t, pop3Item(acct.Id, "UIDL-0002", testMessage(2)), pop3Item(acct.Id, "UIDL-0002", testMessage(2)))
			if !first[0].Created || second[0].Created || second[0].MessageId != first[0].MessageId {
				t.Fatalf("first %+v, retry %+v: want created then not created, same id", first[0], second[0])
			}
			if !third[0].Created || third[1].Created || third[1].MessageId != third[0].MessageId {
				t.Fatalf("same message twice in one batch: %+v, %+v", third[0], third[1])
			}
			if msgs := e.listMessages(t, inbox.Id); len(msgs) != 2 {
				t.Fatalf("INBOX holds %d messages, want 2", len(msgs))
			}
			checkOneCreatedEach(t, e, acct.Id, first[0].MessageId, third[0].MessageId)
		})

		t.Run("imap", func(t *testing.T) {
			acct := e.createAccount(t, imapAccount("imap"))
			up, err := e.ingest.UpsertMailboxes(callCtx(t), &mailbusv1.UpsertMailboxesRequest{AccountId: acct.Id, Mailboxes: []*mailbusv1.UpstreamMailbox{
				{Name: "INBOX", Delimiter: "/", Uidvalidity: 42},
				{Name: "Archive", Delimiter: "/", Uidvalidity: 7, Role: mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE},
			}})
			if err != nil {
				t.Fatalf("UpsertMailboxes: %v", err)
			}
			archive := up.Mailboxes[1].Mailbox
			raw := testMessage(3)
			first := e.mustIngest(t, imapItem(acct.Id, archive.Id, 7, 5, raw))
			second := e.mustIngest(t, imapItem(acct.Id, archive.Id, 7, 5, raw))
			if !first[0].Created || second[0].Created || second[0].MessageId != first[0].MessageId {
				t.Fatalf("first %+v, retry %+v: want created then not created, same id", first[0], second[0])
			}
			// The same bytes under another UID are another message: identity
			// is upstream, not content.
			other := e.mustIngest(t, imapItem(acct.Id, archive.Id, 7, 6, raw))
			if !other[0].Created || other[0].MessageId == first[0].MessageId {
				t.Fatalf("same bytes, other uid: %+v", other[0])
			}
			if msgs := e.listMessages(t, archive.Id); len(msgs) != 2 {
				t.Fatalf("Archive holds %d messages, want 2", len(msgs))
			}
			checkOneCreatedEach(t, e, acct.Id, first[0].MessageId, other[0].MessageId)
		})
	})
}

// checkOneCreatedEach waits until JetStream acknowledged every event, then
// reads all events of the account from the stream: each event once, with its
// id as Nats-Msg-Id, and exactly one message.created for each message (and
// none for any other).
func checkOneCreatedEach(t *testing.T, e *env, accountID string, messageIDs ...string) {
	t.Helper()
	e.waitPublished(t)
	got := readStream(t, e.js, e.stream, events.AccountSubjects(accountID))
	checkEnvelope(t, got)
	created := map[string]int{}
	seen := map[string]bool{}
	var last uint64
	for _, g := range got {
		if seen[g.ev.Id] {
			t.Errorf("event %s stored twice", g.ev.Id)
		}
		seen[g.ev.Id] = true
		if g.ev.AccountId != accountID {
			t.Errorf("event %s of account %s on the account's subjects", g.ev.Id, g.ev.AccountId)
		}
		if g.ev.State <= last && g.ev.GetAccountStatus() == nil {
			t.Errorf("event %s: state %d after %d", g.ev.Id, g.ev.State, last)
		}
		last = g.ev.State
		if mc := g.ev.GetMessageCreated(); mc != nil {
			created[mc.GetMessage().GetId()]++
			if g.ev.Origin.GetKind() != mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM {
				t.Errorf("message.created %s: origin %v, want upstream", g.ev.Id, g.ev.Origin)
			}
		}
	}
	for _, id := range messageIDs {
		if created[id] != 1 {
			t.Errorf("message %s: %d message.created events, want 1", id, created[id])
		}
	}
	if len(created) != len(messageIDs) {
		t.Errorf("message.created events for %v, want only %v", created, messageIDs)
	}
	// The stream holds nothing else for the account: GetChanges from 0 sees
	// as many changes as the stream has data events.
	if st := e.state(t, accountID); last != st {
		t.Errorf("last event state %d, account state %d", last, st)
	}
}

// TestNATSDownThousandChanges stops NATS while devices make 1,000 changes on
// three accounts, then starts it again (same port, same store directory):
// the outbox held every event meanwhile, and the stream then holds each of
// them exactly once (by event id), in state order per account, on the
// right subject, with the device as origin.
func TestNATSDownThousandChanges(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		port, dir := freePort(t), t.TempDir()
		ns := runNATS(t, port, dir)
		e := startStore(t, b, storeOpts{natsURL: ns.ClientURL()})

		const perAccount = 10
		type account struct {
			id    string
			msgs  []string
			since uint64
		}
		accts := []*account{
			{id: e.createAccount(t, pop3Account("one")).Id},
			{id: e.createAccount(t, pop3Account("two")).Id},
			{id: e.createAccount(t, imapAccount("three")).Id},
		}
		for ai, a := range accts {
			var items []item
			inbox := e.inbox(t, a.id)
			for i := range perAccount {
				raw := testMessage(ai*1000 + i)
				if ai == 2 {
					items = append(items, imapItem(a.id, inbox.Id, 1, uint32(i+1), raw))
				} else {
					items = append(items, pop3Item(a.id, fmt.Sprintf("U%d", i), raw))
				}
			}
			for _, r := range e.mustIngest(t, items...) {
				a.msgs = append(a.msgs, r.MessageId)
			}
		}
		e.waitPublished(t)
		before := readStream(t, e.js, e.stream, events.AllSubjects)
		for _, a := range accts {
			a.since = e.state(t, a.id)
		}

		ns.Shutdown()
		ns.WaitForShutdown()

		// 1,000 changes, one distinct keyword each, from one device per
		// account, the three accounts concurrently.
		const changes = 1000
		var wg sync.WaitGroup
		errs := make(chan error, len(accts))
		for ai, a := range accts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), waitLong)
				defer cancel()
				for i := ai; i < changes; i += len(accts) {
					m := a.msgs[(i/len(accts))%perAccount]
					_, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{
						AccountId: a.id, MessageIds: []string{m}, Add: []string{fmt.Sprintf("kw%04d", i)},
						DeviceId: fmt.Sprintf("device-%d", ai),
					})
					if err != nil {
						errs <- fmt.Errorf("change %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		// Nothing could be published: all 1,000 wait in the outbox.
		if n := e.backlog(t); n != changes {
			t.Fatalf("outbox backlog %v with NATS down, want %d", n, changes)
		}

		// What the store says happened: the change log, replayed through
		// WatchChanges from the state before the outage.
		want := map[string]*mailbusv1.Event{}
		for ai, a := range accts {
			evs := replay(t, e, a.id, a.since)
			if len(evs) != (changes-ai+len(accts)-1)/len(accts) {
				t.Fatalf("account %s: %d events in the change log, want %d", a.id, len(evs), (changes-ai+len(accts)-1)/len(accts))
			}
			for _, ev := range evs {
				want[ev.Id] = ev
			}
		}
		if len(want) != changes {
			t.Fatalf("%d distinct events in the change logs, want %d", len(want), changes)
		}

		ns = runNATS(t, port, dir)
		e.waitPublished(t)

		all := readStream(t, e.js, e.stream, events.AllSubjects)
		if len(all) != len(before)+changes {
			t.Errorf("stream holds %d events, want %d before the outage + %d", len(all), len(before), changes)
		}
		for i, g := range all[:min(len(before), len(all))] {
			if g.ev.Id != before[i].ev.Id {
				t.Fatalf("stream message %d changed across the restart: %s, was %s", i, g.ev.Id, before[i].ev.Id)
			}
		}
		got := all[min(len(before), len(all)):]
		checkEnvelope(t, got)
		seen := map[string]bool{}
		last := map[string]uint64{}
		for _, a := range accts {
			last[a.id] = a.since
		}
		for _, g := range got {
			ev := g.ev
			w, ok := want[ev.Id]
			switch {
			case !ok:
				t.Errorf("event %s (%s, account %s, state %d) is not one of the changes", ev.Id, g.subject, ev.AccountId, ev.State)
				continue
			case seen[ev.Id]:
				t.Errorf("event %s received twice", ev.Id)
				continue
			}
			seen[ev.Id] = true
			if ev.State != w.State || ev.AccountId != w.AccountId {
				t.Errorf("event %s: account %s state %d on the stream, %s %d in the log", ev.Id, ev.AccountId, ev.State, w.AccountId, w.State)
			}
			if g.subject != events.SubjectPrefix+"."+ev.AccountId+"."+events.KindMessageUpdated {
				t.Errorf("event %s on subject %s", ev.Id, g.subject)
			}
			if ev.State <= last[ev.AccountId] {
				t.Errorf("account %s: state %d after %d", ev.AccountId, ev.State, last[ev.AccountId])
			}
			last[ev.AccountId] = ev.State
			if ev.Origin.GetKind() != mailbusv1.OriginKind_ORIGIN_KIND_DEVICE || ev.Origin.GetDeviceId() == "" {
				t.Errorf("event %s: origin %v, want a device", ev.Id, ev.Origin)
			}
		}
		if len(seen) != changes {
			t.Errorf("received %d of the %d events", len(seen), changes)
		}
		for _, a := range accts {
			if st := e.state(t, a.id); last[a.id] != st {
				t.Errorf("account %s: last event state %d, account state %d", a.id, last[a.id], st)
			}
		}
	})
}

// replay reads the change log of an account after since through
// WatchChanges, up to the caught_up marker.
func replay(t testing.TB, e *env, accountID string, since uint64) []*mailbusv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	w, err := e.sync.WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: accountID, SinceState: since})
	if err != nil {
		t.Fatalf("WatchChanges: %v", err)
	}
	var out []*mailbusv1.Event
	for {
		resp, err := w.Recv()
		if err != nil {
			t.Fatalf("WatchChanges replay of account %s: %v", accountID, err)
		}
		if resp.CaughtUp {
			return out
		}
		out = append(out, resp.Event)
	}
}

// machineNATS is the NATS server with JetStream that the development and CI
// machines run.
const machineNATS = "nats://127.0.0.1:4222"

// TestMachineNATS runs the store against the machine's NATS server: one
// message ingested twice gives one message.created event, and a device's
// change one message.updated, in order, each once.
//
// The server is shared, and the store's subjects are fixed
// ("mailbus.events.<account>.<kind>"), so the test must not collide with
// another stream on them (JetStream refuses streams with overlapping
// subjects, and a production MAILBUS_EVENTS must never receive test
// events). It makes the database hand out a random, 12-digit account id,
// runs the store on a stream of its own ("MAILBUS_STORE_TEST_<nuid>") whose
// only subject is that account's ("mailbus.events.<id>.>"), and deletes the
// stream at the end. Two runs of the test at once do not collide. A stream
// on the server that catches those subjects (such as a MAILBUS_EVENTS on
// "mailbus.events.>") makes the test fail under CI=true, where the server is
// the test's own and such a stream is a leftover to clean up, and skip
// elsewhere, where it is someone's real stream; the message names it.
// Without a reachable server the test is skipped, except under CI=true.
func TestMachineNATS(t *testing.T) {
	probe, err := nats.Connect(machineNATS, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s: %v", machineNATS, err)
		}
		t.Skipf("NATS at %s not reachable: %v", machineNATS, err)
	}
	probe.Close()

	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		js := connectJS(t, machineNATS)
		accountID := randomAccountID(t)
		cfg := events.StreamConfig(1, time.Hour, 0)
		cfg.Name = "MAILBUS_STORE_TEST_" + nuid.Next()
		cfg.Subjects = []string{events.AccountSubjects(accountID)}

		ctx, cancel := context.WithTimeout(context.Background(), waitLong)
		defer cancel()
		var clash []string
		names := js.StreamNames(ctx, jetstream.WithStreamListSubject(cfg.Subjects[0]))
		for n := range names.Name() {
			clash = append(clash, n)
		}
		if err := names.Err(); err != nil {
			t.Fatalf("list streams on %s: %v", machineNATS, err)
		}
		if len(clash) > 0 {
			msg := fmt.Sprintf("streams %v on %s catch %s, the subjects of this test's stream; they would hold its events (delete them if they are leftovers)", clash, machineNATS, cfg.Subjects[0])
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := js.DeleteStream(ctx, cfg.Name); err != nil {
				t.Errorf("delete stream %s: %v", cfg.Name, err)
			}
		})

		e := startStore(t, b, storeOpts{natsURL: machineNATS, stream: cfg, beforeStart: func(t testing.TB, c db.Config) {
			setNextAccountID(t, c, accountID)
		}})
		acct := e.createAccount(t, pop3Account("machine"))
		if acct.Id != accountID {
			t.Fatalf("account id %s, want %s", acct.Id, accountID)
		}
		r1 := e.mustIngest(t, pop3Item(acct.Id, "U1", testMessage(1)))
		r2 := e.mustIngest(t, pop3Item(acct.Id, "U1", testMessage(1)))
		if !r1[0].Created || r2[0].Created || r1[0].MessageId != r2[0].MessageId {
			t.Fatalf("ingest twice: %+v, %+v", r1[0], r2[0])
		}
		if _, err := e.mailboxes.UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: []string{r1[0].MessageId}, Add: []string{"\\Seen"}, DeviceId: "phone"}); err != nil {
			t.Fatalf("UpdateFlags: %v", err)
		}
		e.waitPublished(t)
		want := replay(t, e, acct.Id, 0)
		got := readStream(t, js, cfg.Name, cfg.Subjects[0])
		checkEnvelope(t, got)
		if len(got) != len(want) {
			t.Fatalf("stream holds %d events, the change log %d", len(got), len(want))
		}
		var kinds []string
		for i, g := range got {
			if g.ev.Id != want[i].Id || g.ev.State != want[i].State {
				t.Errorf("stream event %d: %s state %d, log: %s state %d", i, g.ev.Id, g.ev.State, want[i].Id, want[i].State)
			}
			kinds = append(kinds, events.Kind(g.ev))
		}
		if fmt.Sprint(kinds) != fmt.Sprint([]string{events.KindMailboxCreated, events.KindMessageCreated, events.KindMessageUpdated}) {
			t.Errorf("event kinds %v", kinds)
		}
	})
}

// randomAccountID returns a random 12-digit account id.
func randomAccountID(t testing.TB) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(100_000_000_000 + binary.BigEndian.Uint64(b[:])%800_000_000_000)
}

// setNextAccountID makes the database of c give the next account the id
// want: it applies the migrations, then moves the accounts id sequence.
func setNextAccountID(t testing.TB, c db.Config, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), rpcLong)
	defer cancel()
	c.Secrets = dbtest.Secrets(t)
	d, err := db.Open(ctx, c)
	if err != nil {
		t.Fatalf("open database: %v", err)
	}
	d.Close()
	var n int64
	fmt.Sscan(want, &n)
	var conn *sql.DB
	var stmts []string
	if c.URL != "" {
		conn, err = sql.Open("pgx", c.URL)
		stmts = []string{fmt.Sprintf(`ALTER TABLE accounts ALTER COLUMN id RESTART WITH %d`, n)}
	} else {
		conn, err = sql.Open("sqlite", "file:"+filepath.Join(c.DataDir, "mailbus.db"))
		// AUTOINCREMENT takes max(sqlite_sequence.seq, max(id)) + 1.
		stmts = []string{`DELETE FROM sqlite_sequence WHERE name = 'accounts'`, fmt.Sprintf(`INSERT INTO sqlite_sequence (name, seq) VALUES ('accounts', %d)`, n-1)}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}
