package api

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// accountWatchPending is the most account ids one watcher holds between
// two sends; more, and it is told to resync (list every account) instead.
const accountWatchPending = 1024

// AccountChanges fans committed account changes (created, updated,
// deleted) out to the WatchAccounts streams of this replica (decision
// 0028). It holds no history: a watcher gets what is announced while it
// is registered, and lists the accounts once it is, for what came before.
// Announcing is a signal: the database stays the truth, and a watcher that
// falls behind is told to resync rather than being blocked on.
type AccountChanges struct {
	mu       sync.Mutex
	watchers map[*accountWatcher]struct{}
}

// NewAccountChanges returns an AccountChanges without watchers.
func NewAccountChanges() *AccountChanges {
	return &AccountChanges{watchers: map[*accountWatcher]struct{}{}}
}

// accountWatcher is one WatchAccounts stream's queue of pending ids.
type accountWatcher struct {
	protocol mailbusv1.Protocol
	wake     chan struct{} // capacity 1: something is pending
	mu       sync.Mutex
	ids      []string
	resync   bool
}

// Announce tells the watchers of protocol (and those of every protocol)
// that accounts changed. PROTOCOL_UNSPECIFIED reaches every watcher (the
// protocol is unknown, as for a change seen by another replica). It
// never blocks.
func (c *AccountChanges) Announce(protocol mailbusv1.Protocol, ids ...string) {
	if c == nil || len(ids) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watchers {
		if protocol != mailbusv1.Protocol_PROTOCOL_UNSPECIFIED && w.protocol != mailbusv1.Protocol_PROTOCOL_UNSPECIFIED && w.protocol != protocol {
			continue
		}
		w.add(ids)
	}
}

// Resync tells every watcher to list all accounts again: changes may have
// been missed (the listener for other replicas' changes reconnected).
func (c *AccountChanges) Resync() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for w := range c.watchers {
		w.mu.Lock()
		w.ids, w.resync = nil, true
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *accountWatcher) add(ids []string) {
	w.mu.Lock()
	if !w.resync {
		if len(w.ids)+len(ids) > accountWatchPending {
			w.ids, w.resync = nil, true
		} else {
			w.ids = append(w.ids, ids...)
		}
	}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// take returns and clears what is pending.
func (w *accountWatcher) take() *mailbusv1.WatchAccountsResponse {
	w.mu.Lock()
	defer w.mu.Unlock()
	resp := &mailbusv1.WatchAccountsResponse{Resync: w.resync}
	if !w.resync {
		resp.AccountIds = dedupe(w.ids)
	}
	w.ids, w.resync = nil, false
	return resp
}

func dedupe(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

func (c *AccountChanges) register(protocol mailbusv1.Protocol) *accountWatcher {
	w := &accountWatcher{protocol: protocol, wake: make(chan struct{}, 1)}
	c.mu.Lock()
	c.watchers[w] = struct{}{}
	c.mu.Unlock()
	return w
}

func (c *AccountChanges) unregister(w *accountWatcher) {
	c.mu.Lock()
	delete(c.watchers, w)
	c.mu.Unlock()
}

// WatchAccounts implements IngestService: it registers the stream, sends
// ready, then sends what is announced until the client goes or the store
// stops.
func (s *Ingest) WatchAccounts(req *mailbusv1.WatchAccountsRequest, stream mailbusv1.IngestService_WatchAccountsServer) error {
	if s.AccountChanges == nil {
		return status.Error(codes.Unimplemented, "this store does not announce account changes: list the accounts")
	}
	w := s.AccountChanges.register(req.Protocol)
	defer s.AccountChanges.unregister(w)
	if err := stream.Send(&mailbusv1.WatchAccountsResponse{Ready: true}); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.Stopping:
			return status.Error(codes.Unavailable, "the store is stopping: watch again and list the accounts")
		case <-w.wake:
		}
		resp := w.take()
		if !resp.Resync && len(resp.AccountIds) == 0 {
			continue // taken with an earlier wake-up
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}
