package imapgw

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// hub shares one SyncService.WatchChanges stream per account among all the
// sessions that have a mailbox of it selected: 1,000 clients of one
// account cost one stream, not 1,000. The stream runs with the token of
// one of the subscribed sessions (any of them may read the account) and
// stops when the last one leaves.
type hub struct {
	conn grpc.ClientConnInterface
	log  *slog.Logger

	mu       sync.Mutex
	accounts map[string]*accountWatch
	closed   bool
}

func newHub(conn grpc.ClientConnInterface, log *slog.Logger) *hub {
	return &hub{conn: conn, log: log, accounts: map[string]*accountWatch{}}
}

// accountWatch is the stream of one account.
type accountWatch struct {
	id     string
	cancel context.CancelFunc
	// ready is closed once the stream's starting state is known: events
	// committed after a subscription that waited for it are delivered; or
	// with err set when the first try to learn it failed.
	ready chan struct{}
	err   error
	// subs are guarded by hub.mu.
	subs map[*subscription]struct{}
}

// subscription is one session's queue of the events of its selected
// mailbox.
type subscription struct {
	token string
	// mailbox is the selected mailbox's id: only its events are queued.
	mailbox string
	// max is the most events queued: past it the queue is dropped and
	// the session lists its mailbox again (a client that does not poll
	// for a long time holds no more than that).
	max int

	mu     sync.Mutex
	queue  []*mailbusv1.Event
	resync bool // events were lost: list the mailbox again
	// seen is the state of the last event of the account given to the
	// subscription, of any mailbox: the stream is in state order and
	// every data change has its own state, so every change up to seen
	// that touches the mailbox is queued (or was taken).
	seen uint64
	// seenMoved, when not nil, is closed when seen grows (waitSeen).
	seenMoved chan struct{}
	// onWake, while the session IDLEs, is called when events come.
	onWake func()
}

// maxQueue is a subscription's default most events queued.
const maxQueue = 10000

// touches reports whether an event may change the view of a mailbox: a
// message created, changed, moved in or out, or deleted there, or the
// mailbox deleted. A deletion that names no mailbox (an event older than
// MessageDeleted.mailbox_id) counts.
func touches(ev *mailbusv1.Event, mailbox string) bool {
	if ev.GetMailbox().GetId() == mailbox {
		return true
	}
	switch p := ev.Payload.(type) {
	case *mailbusv1.Event_MessageCreated:
		return p.MessageCreated.GetMessage().GetMailboxId() == mailbox
	case *mailbusv1.Event_MessageUpdated:
		u := p.MessageUpdated
		return u.GetMessage().GetMailboxId() == mailbox || u.PreviousMailboxId == mailbox
	case *mailbusv1.Event_MessageDeleted:
		d := p.MessageDeleted
		return d.MailboxId == mailbox || (d.MailboxId == "" && ev.GetMailbox().GetId() == "")
	case *mailbusv1.Event_MailboxDeleted:
		return p.MailboxDeleted.MailboxId == mailbox
	}
	return false
}

func (s *subscription) push(ev *mailbusv1.Event) {
	s.mu.Lock()
	if ev.State > s.seen {
		s.seen = ev.State
		if s.seenMoved != nil {
			close(s.seenMoved)
			s.seenMoved = nil
		}
	}
	if !touches(ev, s.mailbox) {
		s.mu.Unlock()
		return
	}
	if s.resync {
		// Listing again covers it.
	} else if len(s.queue) >= s.max {
		s.queue, s.resync = nil, true
	} else {
		s.queue = append(s.queue, ev)
	}
	s.mu.Unlock()
	s.wake()
}

func (s *subscription) lost() {
	s.mu.Lock()
	s.queue, s.resync = nil, true
	s.mu.Unlock()
	s.wake()
}

// retry asks for the mailbox to be listed again at the next poll, without
// waking an IDLE (after a failed listing: Idle retries on a timer).
func (s *subscription) retry() {
	s.mu.Lock()
	s.queue, s.resync = nil, true
	s.mu.Unlock()
}

func (s *subscription) wake() {
	s.mu.Lock()
	f := s.onWake
	s.mu.Unlock()
	if f != nil {
		f()
	}
}

// setOnWake sets (or, with nil, clears) what wake calls.
func (s *subscription) setOnWake(f func()) {
	s.mu.Lock()
	s.onWake = f
	s.mu.Unlock()
}

// take returns the queued events, and whether the mailbox must be listed
// again instead.
func (s *subscription) take() ([]*mailbusv1.Event, bool) {
	q, r, _ := s.takeSeen()
	return q, r
}

// takeSeen is take, with the state of the last event of the account
// given to the subscription by then (seen).
func (s *subscription) takeSeen() ([]*mailbusv1.Event, bool, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	q, r := s.queue, s.resync
	s.queue, s.resync = nil, false
	return q, r, s.seen
}

// waitSeen waits until the subscription was given the account's events
// up to state (or lost events: listing again covers them); false when
// ctx ended first.
func (s *subscription) waitSeen(ctx context.Context, state uint64) bool {
	for {
		s.mu.Lock()
		if s.seen >= state || s.resync {
			s.mu.Unlock()
			return true
		}
		if s.seenMoved == nil {
			s.seenMoved = make(chan struct{})
		}
		moved := s.seenMoved
		s.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return false
		}
	}
}

// putBack returns events not yet applied to the front of the queue.
func (s *subscription) putBack(evs []*mailbusv1.Event) {
	if len(evs) == 0 {
		return
	}
	s.mu.Lock()
	s.queue = append(evs[:len(evs):len(evs)], s.queue...)
	s.mu.Unlock()
}

// subscribe adds a session of an account with a mailbox selected. It
// returns once the account's stream knows its starting state, so that
// every change committed after subscribe returns is delivered (some
// committed before may be too: the session applies events idempotently).
func (h *hub) subscribe(ctx context.Context, accountID, mailboxID, token string) (*subscription, error) {
	sub := &subscription{token: token, mailbox: mailboxID, max: maxQueue}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, errors.New("imapgw: shutting down")
	}
	w := h.accounts[accountID]
	if w == nil {
		wctx, cancel := context.WithCancel(context.Background())
		w = &accountWatch{id: accountID, cancel: cancel, ready: make(chan struct{}), subs: map[*subscription]struct{}{}}
		h.accounts[accountID] = w
		go h.run(wctx, w)
	}
	w.subs[sub] = struct{}{}
	h.mu.Unlock()
	select {
	case <-w.ready:
		if w.err != nil {
			h.unsubscribe(accountID, sub)
			return nil, w.err
		}
		return sub, nil
	case <-ctx.Done():
		h.unsubscribe(accountID, sub)
		return nil, ctx.Err()
	}
}

func (h *hub) unsubscribe(accountID string, sub *subscription) {
	h.mu.Lock()
	defer h.mu.Unlock()
	w := h.accounts[accountID]
	if w == nil {
		return
	}
	if _, ok := w.subs[sub]; !ok {
		return // of a stream that failed and was replaced
	}
	delete(w.subs, sub)
	if len(w.subs) == 0 {
		w.cancel()
		delete(h.accounts, accountID)
	}
}

// forget removes a failed account stream from the hub, so that the next
// subscription starts a new one.
func (h *hub) forget(w *accountWatch) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.accounts[w.id] == w {
		delete(h.accounts, w.id)
	}
	w.cancel()
}

func (h *hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for id, w := range h.accounts {
		w.cancel()
		delete(h.accounts, id)
	}
}

// token returns the token of one of the account's subscribers, or "" when
// none is left.
func (h *hub) token(w *accountWatch) string {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range w.subs {
		return s.token
	}
	return ""
}

// fanOut gives an event to every subscriber; lost tells them all to list
// again.
func (h *hub) fanOut(w *accountWatch, ev *mailbusv1.Event, lost bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for s := range w.subs {
		if lost {
			s.lost()
		} else {
			s.push(ev)
		}
	}
}

// Reconnect waits of the account stream: doubled after each failure, with
// jitter, so that many gateways do not retry a store in step.
const (
	watchRetryMin = 200 * time.Millisecond
	watchRetryMax = 10 * time.Second
)

// run keeps the account's stream open until ctx ends: from the state the
// store had when it started, then on from the last event seen, so that a
// broken stream loses nothing; when the store no longer has the events
// after that state (OUT_OF_RANGE), the sessions list their mailboxes
// again.
func (h *hub) run(ctx context.Context, w *accountWatch) {
	var state uint64
	haveState := false
	wait := watchRetryMin
	for ctx.Err() == nil {
		token := h.token(w)
		if token == "" {
			return
		}
		creds := grpc.PerRPCCredentials(apitoken.Credentials(token))
		if !haveState {
			st, err := mailbusv1.NewSyncServiceClient(h.conn).GetState(ctx, &mailbusv1.GetStateRequest{AccountId: w.id}, creds)
			if err != nil {
				h.log.Warn("imap gateway: account state", "account", w.id, "err", err)
				select {
				case <-w.ready:
				default:
					// The first try: the waiting sessions fail (their
					// SELECT answers NO) and the next one starts afresh.
					w.err = err
					h.forget(w)
					close(w.ready)
					return
				}
				if !sleep(ctx, &wait) {
					return
				}
				continue
			}
			state, haveState = st.State, true
			select {
			case <-w.ready:
				// A restart after OUT_OF_RANGE: the sessions list again.
				h.fanOut(w, nil, true)
			default:
				close(w.ready)
			}
		}
		err := h.watch(ctx, w, state, creds, &state, &wait)
		if ctx.Err() != nil {
			return
		}
		switch status.Code(err) {
		case codes.OutOfRange:
			haveState = false
			continue
		case codes.Unauthenticated, codes.PermissionDenied:
			// The token was revoked: another subscriber's may still work.
			h.log.Info("imap gateway: account watch refused", "account", w.id, "err", err)
		default:
			h.log.Warn("imap gateway: account watch broke", "account", w.id, "err", err)
		}
		if !sleep(ctx, &wait) {
			return
		}
	}
}

// watch streams the account's events after since into the subscribers,
// keeping *last at the state of the last event.
func (h *hub) watch(ctx context.Context, w *accountWatch, since uint64, creds grpc.CallOption, last *uint64, wait *time.Duration) error {
	stream, err := mailbusv1.NewSyncServiceClient(h.conn).WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: w.id, SinceState: since, SkipStatus: true}, creds)
	if err != nil {
		return err
	}
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			return errors.New("watch ended")
		}
		if err != nil {
			return err
		}
		*wait = watchRetryMin
		ev := resp.GetEvent()
		if ev == nil {
			continue
		}
		if ev.State > *last {
			*last = ev.State
		}
		h.fanOut(w, ev, false)
	}
}

// sleep waits *wait with jitter and doubles it; false when ctx ended.
func sleep(ctx context.Context, wait *time.Duration) bool {
	d := *wait/2 + rand.N(*wait/2+1)
	*wait = min(*wait*2, watchRetryMax)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
