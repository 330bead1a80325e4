// Package accountrun runs one worker per upstream account and keeps the set
// of workers in step with the store's accounts: it lists the accounts of one
// protocol periodically (and whenever Kick is called), starts a worker for a
// new account, restarts it when the account's generation changes (any
// update, such as a new password or an un-park), and stops it when the
// account is gone. A worker is a function that runs until its context ends.
//
// It is the part the POP3 fetcher and IMAP sync share; which accounts a
// replica runs is decided by Filter (every account by default; ownership
// across replicas plugs in there).
package accountrun

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// DefaultRefresh is how often the account list is read without a Kick.
const DefaultRefresh = 10 * time.Second

// Lister is the part of AccountServiceClient the supervisor needs.
type Lister interface {
	ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error)
}

// FromClient adapts the store's AccountService client to a Lister.
func FromClient(c mailbusv1.AccountServiceClient) Lister { return clientLister{c} }

type clientLister struct {
	c mailbusv1.AccountServiceClient
}

func (l clientLister) ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error) {
	return l.c.ListAccounts(ctx, req)
}

// Config configures a Supervisor.
type Config struct {
	// Accounts lists accounts (the store's AccountService client, adapted).
	Accounts Lister
	// Protocol selects the accounts.
	Protocol mailbusv1.Protocol
	// Work runs one account until ctx ends. It is called in its own
	// goroutine and must return soon after ctx ends.
	Work func(ctx context.Context, account *mailbusv1.Account)
	// Filter, when set, says whether this replica runs an account.
	Filter func(account *mailbusv1.Account) bool
	// Refresh is how often the list is read; 0 means DefaultRefresh.
	Refresh time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Supervisor keeps one worker per account.
type Supervisor struct {
	cfg     Config
	kick    chan struct{}
	mu      sync.Mutex
	workers map[string]*worker
}

type worker struct {
	generation uint64
	cancel     context.CancelFunc
	done       chan struct{}
}

// New returns a Supervisor.
func New(cfg Config) *Supervisor {
	if cfg.Refresh <= 0 {
		cfg.Refresh = DefaultRefresh
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{cfg: cfg, kick: make(chan struct{}, 1), workers: map[string]*worker{}}
}

// Kick asks for a new look at the account list soon. It never blocks.
func (s *Supervisor) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Running returns the ids of the accounts with a worker.
func (s *Supervisor) Running() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.workers))
	for id := range s.workers {
		ids = append(ids, id)
	}
	return ids
}

// Run supervises until ctx ends, then stops every worker and waits for
// them.
func (s *Supervisor) Run(ctx context.Context) error {
	defer s.stopAll()
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	for {
		if err := s.syncOnce(ctx); err != nil && ctx.Err() == nil {
			s.cfg.Logger.Warn("cannot list accounts; keeping the current workers", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-s.kick:
		}
	}
}

// syncOnce reads the account list and starts, restarts and stops workers.
func (s *Supervisor) syncOnce(ctx context.Context) error {
	accounts, err := s.list(ctx)
	if err != nil {
		return err
	}
	want := map[string]*mailbusv1.Account{}
	for _, a := range accounts {
		if s.cfg.Filter == nil || s.cfg.Filter(a) {
			want[a.Id] = a
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Cancel every worker to stop first, then wait for them together, so
	// that one slow to stop does not hold up the others.
	var stopping []*worker
	for id, w := range s.workers {
		a, ok := want[id]
		if ok && a.Generation == w.generation {
			continue
		}
		w.cancel()
		stopping = append(stopping, w)
		delete(s.workers, id)
		if ok {
			s.cfg.Logger.Info("account changed; restarting its worker", "account", id, "generation", a.Generation)
		} else {
			s.cfg.Logger.Info("account gone; stopping its worker", "account", id)
		}
	}
	for _, w := range stopping {
		<-w.done
	}
	for id, a := range want {
		if _, ok := s.workers[id]; ok {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		w := &worker{generation: a.Generation, cancel: cancel, done: make(chan struct{})}
		s.workers[id] = w
		go func() {
			defer close(w.done)
			s.cfg.Work(wctx, a)
		}()
	}
	return nil
}

func (s *Supervisor) list(ctx context.Context) ([]*mailbusv1.Account, error) {
	var out []*mailbusv1.Account
	token := ""
	for {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		resp, err := s.cfg.Accounts.ListAccounts(lctx, &mailbusv1.ListAccountsRequest{Protocol: s.cfg.Protocol, PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("accountrun: list accounts: %w", err)
		}
		out = append(out, resp.Accounts...)
		if resp.NextPageToken == "" {
			return out, nil
		}
		token = resp.NextPageToken
	}
}

func (s *Supervisor) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.workers {
		w.cancel()
	}
	for id, w := range s.workers {
		<-w.done
		delete(s.workers, id)
	}
}
