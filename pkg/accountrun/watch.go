package accountrun

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/backoff"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Watching again after a broken stream: at once while the store is
// unreachable (the call waits for the connection), and with a backoff
// between these bounds when the store answers but ends the stream (a
// refusal, a store stopping again and again). The list, every Refresh,
// covers the time in between.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 30 * time.Second
)

// ChangeWatcher is the part of IngestServiceClient that announces account
// changes (IngestService.WatchAccounts).
type ChangeWatcher interface {
	WatchAccounts(ctx context.Context, in *mailbusv1.WatchAccountsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mailbusv1.WatchAccountsResponse], error)
}

// pendingIDs is the queue of announced account ids between the watch
// goroutine and the supervisor's loop: ids are merged, never blocked on.
type pendingIDs struct {
	wake chan struct{} // capacity 1: something is pending
	mu   sync.Mutex
	ids  map[string]struct{}
}

func newPendingIDs() *pendingIDs {
	return &pendingIDs{wake: make(chan struct{}, 1), ids: map[string]struct{}{}}
}

func (p *pendingIDs) add(ids []string) {
	p.mu.Lock()
	for _, id := range ids {
		p.ids[id] = struct{}{}
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

func (p *pendingIDs) take() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, 0, len(p.ids))
	for id := range p.ids {
		out = append(out, id)
	}
	clear(p.ids)
	return out
}

// watch follows the store's announcements until ctx ends, watching again
// whenever the stream breaks (a store restarted). Each time the stream is
// established it kicks a list, for what changed while it was not.
func (s *Supervisor) watch(ctx context.Context) {
	b := backoff.Backoff{Min: watchRetryMin, Max: watchRetryMax}
	for {
		err := s.watchOnce(ctx, &b)
		if ctx.Err() != nil {
			return
		}
		if status.Code(err) == codes.Unimplemented {
			s.cfg.Logger.Info("the store does not announce account changes; new accounts are seen when the accounts are listed", "refresh", s.cfg.Refresh.String())
			return
		}
		delay := b.Next()
		s.cfg.Logger.Info("account change stream broken; watching again", "err", err, "in", delay.String())
		if !backoff.Sleep(ctx, delay) {
			return
		}
	}
}

// watchOnce follows one stream until it breaks.
func (s *Supervisor) watchOnce(ctx context.Context, b *backoff.Backoff) error {
	stream, err := s.cfg.Changes.WatchAccounts(ctx, &mailbusv1.WatchAccountsRequest{Protocol: s.cfg.Protocol}, grpc.WaitForReady(true))
	if err != nil {
		return fmt.Errorf("accountrun: watch accounts: %w", err)
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return fmt.Errorf("accountrun: watch accounts: %w", err)
		}
		switch {
		case resp.Ready:
			b.Reset()
			s.Kick()
		case resp.Resync:
			s.Kick()
		default:
			s.announced.add(resp.AccountIds)
		}
	}
}

// syncAnnounced reads each announced account and starts, restarts or
// stops its worker. Without a Getter, or when a read fails, it kicks a
// list instead.
func (s *Supervisor) syncAnnounced(ctx context.Context) {
	ids := s.announced.take()
	getter, ok := s.cfg.Accounts.(Getter)
	if !ok {
		s.Kick()
		return
	}
	for _, id := range ids {
		if err := s.syncOne(ctx, getter, id); err != nil {
			if ctx.Err() == nil {
				s.cfg.Logger.Warn("cannot read an announced account; listing them all", "account", id, "err", err)
				s.Kick()
			}
			return
		}
	}
}

// syncOne brings the worker of one account in step with the store: a read
// made after every earlier read of the loop, so it is the newest truth.
func (s *Supervisor) syncOne(ctx context.Context, getter Getter, id string) error {
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	resp, err := getter.GetAccount(gctx, &mailbusv1.GetAccountRequest{AccountId: id})
	cancel()
	var a *mailbusv1.Account
	switch {
	case status.Code(err) == codes.NotFound:
	case err != nil:
		return fmt.Errorf("accountrun: get account %s: %w", id, err)
	case resp.GetAccount() == nil:
		return fmt.Errorf("accountrun: get account %s: no account in the answer", id)
	default:
		a = resp.GetAccount()
	}
	want := a != nil && (s.cfg.Protocol == mailbusv1.Protocol_PROTOCOL_UNSPECIFIED || a.Protocol == s.cfg.Protocol) &&
		(s.cfg.Filter == nil || s.cfg.Filter(a))
	s.mu.Lock()
	defer s.mu.Unlock()
	w, running := s.workers[id]
	if running && want && w.generation == a.Generation {
		return nil
	}
	if running {
		w.cancel()
		<-w.done
		delete(s.workers, id)
		if want {
			s.cfg.Logger.Info("account changed; restarting its worker", "account", id, "generation", a.Generation)
		} else {
			s.cfg.Logger.Info("account gone; stopping its worker", "account", id)
		}
	}
	if want {
		s.start(ctx, a)
	}
	return nil
}
