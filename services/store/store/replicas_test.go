package store_test

import (
	"fmt"
	"sync"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// Two store replicas on one PostgreSQL and one NATS, both taking device
// changes at once: each event reaches the stream exactly once, and per
// account in state order (only the replica holding the advisory lock
// publishes; the other's commits wait in the shared outbox).
func TestTwoReplicasOnePostgres(t *testing.T) {
	pg := dbtest.Backends()[1]
	cfg := pg.Config(t)
	ns := runNATS(t, -1, t.TempDir())
	a := startStore(t, pg, storeOpts{natsURL: ns.ClientURL(), dbConfig: &cfg})
	b := startStore(t, pg, storeOpts{natsURL: ns.ClientURL(), dbConfig: &cfg})

	var accounts []*mailbusv1.Account
	var messages [][]string
	for i := 0; i < 2; i++ {
		acct := a.createAccount(t, pop3Account(fmt.Sprint("replicated-", i)))
		accounts = append(accounts, acct)
		var items []item
		for j := 0; j < 5; j++ {
			items = append(items, pop3Item(acct.Id, fmt.Sprint("u", j), testMessage(i*10+j)))
		}
		var ids []string
		for _, r := range b.mustIngest(t, items...) {
			ids = append(ids, r.MessageId)
		}
		messages = append(messages, ids)
	}
	const perReplica = 100
	var wg sync.WaitGroup
	for r, e := range []*env{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < perReplica; i++ {
				acct := i % len(accounts)
				_, err := e.mailboxes.UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{
					AccountId: accounts[acct].Id, MessageIds: []string{messages[acct][i%5]},
					Add: []string{fmt.Sprintf("r%d_%d", r, i)}, DeviceId: fmt.Sprint("device-", r),
				})
				if err != nil {
					t.Errorf("replica %d change %d: %v", r, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	a.waitPublished(t)
	b.waitPublished(t)
	// One relay leads; the other stands by.
	if la, lb := metric(t, a.reg, "mailbus_relay_leader"), metric(t, b.reg, "mailbus_relay_leader"); la+lb != 1 {
		t.Fatalf("relay leaders: replica a %v, replica b %v; want exactly one", la, lb)
	}

	// What the stream holds is exactly the change log, once each.
	log := map[string]*mailbusv1.Event{}
	d := openDB(t, cfg)
	for _, acct := range accounts {
		evs, err := d.EventsAfter(callCtx(t), acct.Id, -1, 0, 0, 100000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			log[e.Event.Id] = e.Event
		}
	}
	got := readStream(t, a.js, a.stream, "mailbus.events.>")
	checkEnvelope(t, got)
	seen := map[string]bool{}
	last := map[string]uint64{}
	updates := 0
	for _, se := range got {
		if seen[se.ev.Id] {
			t.Fatalf("event %s published twice", se.ev.Id)
		}
		seen[se.ev.Id] = true
		if _, ok := log[se.ev.Id]; !ok {
			t.Fatalf("event %s is not in the change log", se.ev.Id)
		}
		if se.ev.GetAccountStatus() == nil {
			if se.ev.State <= last[se.ev.AccountId] {
				t.Fatalf("account %s: state %d after %d", se.ev.AccountId, se.ev.State, last[se.ev.AccountId])
			}
			last[se.ev.AccountId] = se.ev.State
		}
		if se.ev.GetMessageUpdated() != nil {
			updates++
		}
	}
	if len(seen) != len(log) {
		t.Fatalf("stream has %d events, the change log %d", len(seen), len(log))
	}
	if updates != 2*perReplica {
		t.Fatalf("%d update events, want %d", updates, 2*perReplica)
	}
}

func openDB(t *testing.T, cfg db.Config) *db.DB {
	t.Helper()
	d, err := db.Open(callCtx(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
