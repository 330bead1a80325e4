package pop3fetcher_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// statusEvents returns the account.status events of an account on
// JetStream, in order, once the store has published everything.
func (e *env) statusEvents(t testing.TB, accountID string) []*mailbusv1.AccountStatus {
	t.Helper()
	waitFor(t, "the outbox to drain", func() bool { return metric(t, e.storeReg, "mailbus_store_outbox_backlog") == 0 })
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	filter := fmt.Sprintf("%s.%s.account.status", events.SubjectPrefix, accountID)
	s, err := e.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, n := range info.State.Subjects {
		want += int(n)
	}
	var out []*mailbusv1.AccountStatus
	if want == 0 {
		return out
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		t.Fatal(err)
	}
	for len(out) < want {
		batch, err := c.Fetch(want-len(out), jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			ev, err := events.Unmarshal(m.Data())
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ev.GetAccountStatus().GetStatus())
		}
		if n == 0 {
			t.Fatalf("stream ended after %d of %d events", len(out), want)
		}
	}
	return out
}

// TestStatusReports: the first pass reports INITIAL_SYNC with the progress
// totals, then IDLE with last_success_time; a pass with nothing new makes
// no event; a later pass with new mail reports SYNCING.
func TestStatusReports(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 3)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "pw", keep)
	f, _ := e.newFetcher(t)
	poll(t, f, acct)
	evs := e.statusEvents(t, acct.Id)
	if len(evs) != 2 {
		t.Fatalf("first pass: %d status events, want 2: %v", len(evs), evs)
	}
	var size uint64
	for _, m := range msgs {
		size += uint64(len(m.Data))
	}
	if p := evs[0].GetProgress(); evs[0].GetState() != mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC ||
		p.GetMessagesTotal() != 3 || p.GetBytesTotal() != size || p.GetMessagesDone() != 0 {
		t.Errorf("first event: %v", evs[0])
	}
	if evs[1].GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || evs[1].GetLastSuccessTime() == nil {
		t.Errorf("second event: %v", evs[1])
	}

	poll(t, f, acct)
	if n := len(e.statusEvents(t, acct.Id)); n != 2 {
		t.Errorf("a pass with nothing new made %d status events", n-2)
	}

	srv.Deliver("bob", someMessages(4, 1)...)
	poll(t, f, acct)
	evs = e.statusEvents(t, acct.Id)
	if len(evs) != 4 || evs[2].GetState() != mailbusv1.SyncState_SYNC_STATE_SYNCING || evs[2].GetProgress().GetMessagesTotal() != 1 ||
		evs[3].GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE {
		t.Errorf("events after a delivery: %v", evs)
	}
}
