package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

var errInjected = errors.New("injected failure")

// fakeOutbox is an in-memory Outbox that can be told to fail.
type fakeOutbox struct {
	mu        sync.Mutex
	rows      []Pending // in seq order
	published map[int64]bool
	// failMark makes the next failMark calls of MarkPublished fail.
	failMark int
	// onUnpublished, when set, runs at the start of each Unpublished call.
	onUnpublished func()
}

func newFakeOutbox() *fakeOutbox {
	return &fakeOutbox{published: map[int64]bool{}}
}

func (o *fakeOutbox) add(ps ...Pending) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.rows = append(o.rows, ps...)
}

func (o *fakeOutbox) Unpublished(ctx context.Context, limit int) ([]Pending, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.onUnpublished != nil {
		o.onUnpublished()
	}
	var out []Pending
	for _, p := range o.rows {
		if len(out) == limit {
			break
		}
		if !o.published[p.Seq] {
			out = append(out, p)
		}
	}
	return out, nil
}

func (o *fakeOutbox) MarkPublished(ctx context.Context, seqs []int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.failMark > 0 {
		o.failMark--
		return errInjected
	}
	for _, s := range seqs {
		o.published[s] = true
	}
	return nil
}

// unpublished counts the events not marked published.
func (o *fakeOutbox) unpublished() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.rows) - len(o.published)
}

// fakeLeader grants leadership when told to, and takes it back.
type fakeLeader struct {
	grants chan struct{}
	mu     sync.Mutex
	cancel context.CancelFunc
}

func newFakeLeader() *fakeLeader { return &fakeLeader{grants: make(chan struct{})} }

func (l *fakeLeader) Acquire(ctx context.Context) (context.Context, func(), error) {
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case <-l.grants:
	}
	leadCtx, cancel := context.WithCancel(ctx)
	l.mu.Lock()
	l.cancel = cancel
	l.mu.Unlock()
	return leadCtx, cancel, nil
}

// grant lets one waiting Acquire return; it blocks until one waits.
func (l *fakeLeader) grant(t *testing.T) {
	t.Helper()
	select {
	case l.grants <- struct{}{}:
	case <-time.After(10 * time.Second):
		t.Fatal("no Acquire waiting for leadership")
	}
}

// revoke ends the current leadership.
func (l *fakeLeader) revoke() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cancel != nil {
		l.cancel()
	}
}

// eventGen makes outbox rows: events over a number of accounts, each
// account's state increasing by one per event, as the store would write them.
type eventGen struct {
	run      string // makes event ids unique to the test
	prefix   string // subject prefix; "" means the real one, events.Subject
	accounts int
	seq      int64
	state    map[string]uint64
	byID     map[string]Pending
}

func newEventGen(run, prefix string, accounts int) *eventGen {
	return &eventGen{run: run, prefix: prefix, accounts: accounts, state: map[string]uint64{}, byID: map[string]Pending{}}
}

func (g *eventGen) next(t *testing.T, n int) []Pending {
	t.Helper()
	out := make([]Pending, 0, n)
	for range n {
		g.seq++
		acct := fmt.Sprintf("acct%02d", g.seq%int64(g.accounts))
		g.state[acct]++
		e := &mailbusv1.Event{
			Id:        fmt.Sprintf("%s-%06d", g.run, g.seq),
			AccountId: acct,
			State:     g.state[acct],
			Origin:    &mailbusv1.Origin{},
			Time:      timestamppb.Now(),
		}
		switch g.seq % 3 {
		case 0:
			e.Payload = &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{
				Message: &mailbusv1.MessageSummary{Id: fmt.Sprintf("m%d", g.seq), AccountId: acct, MailboxId: "inbox"}}}
		case 1:
			e.Payload = &mailbusv1.Event_MessageUpdated{MessageUpdated: &mailbusv1.MessageUpdated{
				Message: &mailbusv1.MessageSummary{Id: fmt.Sprintf("m%d", g.seq-1), AccountId: acct}, FlagsAdded: []string{`\Seen`}}}
		default:
			e.Payload = &mailbusv1.Event_MailboxCreated{MailboxCreated: &mailbusv1.MailboxCreated{}}
		}
		subject, err := events.Subject(e)
		if err != nil {
			t.Fatal(err)
		}
		if g.prefix != "" {
			subject = g.prefix + "." + strings.TrimPrefix(subject, events.SubjectPrefix+".")
		}
		payload, err := events.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		p := Pending{Seq: g.seq, EventID: e.Id, AccountID: acct, Subject: subject, Payload: payload}
		g.byID[e.Id] = p
		out = append(out, p)
	}
	return out
}
