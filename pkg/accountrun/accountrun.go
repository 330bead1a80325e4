// Package accountrun runs one worker per upstream account and keeps the set
// of workers in step with the store's accounts: it starts a worker for a
// new account, restarts it when the account's generation changes (any
// update, such as a new password or an un-park), and stops it when the
// account is gone. A worker is a function that runs until its context ends.
//
// It learns of changes in two ways (decision 0028). The store announces
// them on a stream (Config.Changes, IngestService.WatchAccounts): an
// announced account is read again and its worker started, restarted or
// stopped at once. And it lists every account of its protocol
// periodically (Config.Refresh), whenever Kick is called, and whenever the
// stream is (re)established: the list is the safety net, so a lost
// announcement, a broken stream or a store that announces nothing delays
// a change to the next list but never loses it.
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
// Changes announced on Config.Changes do not wait for it.
const DefaultRefresh = 10 * time.Second

// Lister is the part of AccountServiceClient the supervisor needs.
type Lister interface {
	ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error)
}

// Getter reads one account; a Lister that is also a Getter lets the
// supervisor act on an announced account without listing them all. A
// deleted account is a gRPC NOT_FOUND.
type Getter interface {
	GetAccount(ctx context.Context, req *mailbusv1.GetAccountRequest) (*mailbusv1.GetAccountResponse, error)
}

// FromClient adapts the store's AccountService client to a Lister.
func FromClient(c mailbusv1.AccountServiceClient) Lister { return clientLister{c} }

type clientLister struct {
	c mailbusv1.AccountServiceClient
}

func (l clientLister) ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error) {
	return l.c.ListAccounts(ctx, req)
}

func (l clientLister) GetAccount(ctx context.Context, req *mailbusv1.GetAccountRequest) (*mailbusv1.GetAccountResponse, error) {
	return l.c.GetAccount(ctx, req)
}

// Config configures a Supervisor.
type Config struct {
	// Accounts lists accounts (the store's AccountService client, adapted).
	Accounts Lister
	// Changes, when set, announces account changes (the store's
	// IngestService client): announced accounts are acted on at once,
	// without waiting for Refresh. Nil means lists only.
	Changes ChangeWatcher
	// Protocol selects the accounts.
	Protocol mailbusv1.Protocol
	// Work runs one account until ctx ends. It is called in its own
	// goroutine and must return soon after ctx ends.
	Work func(ctx context.Context, account *mailbusv1.Account)
	// Filter, when set, says whether this replica runs an account.
	Filter func(account *mailbusv1.Account) bool
	// Refresh is how often the list is read; 0 means DefaultRefresh. It
	// bounds how late a change is seen when its announcement is lost.
	Refresh time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

// Supervisor keeps one worker per account.
type Supervisor struct {
	cfg  Config
	kick chan struct{}
	// announced holds the ids the store announced, not yet acted on.
	announced *pendingIDs
	mu        sync.Mutex
	workers   map[string]*worker
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
	return &Supervisor{cfg: cfg, kick: make(chan struct{}, 1), announced: newPendingIDs(), workers: map[string]*worker{}}
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
	if s.cfg.Changes != nil {
		wctx, cancel := context.WithCancel(ctx)
		watchDone := make(chan struct{})
		go func() {
			defer close(watchDone)
			s.watch(wctx)
		}()
		defer func() { cancel(); <-watchDone }()
	}
	t := time.NewTicker(s.cfg.Refresh)
	defer t.Stop()
	list := true
	for {
		if list {
			if err := s.syncOnce(ctx); err != nil && ctx.Err() == nil {
				s.cfg.Logger.Warn("cannot list accounts; keeping the current workers", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			list = true
		case <-s.kick:
			list = true
		case <-s.announced.wake:
			list = false
			s.syncAnnounced(ctx)
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
		if _, ok := s.workers[id]; !ok {
			s.start(ctx, a)
		}
	}
	return nil
}

// start starts a's worker; s.mu is held.
func (s *Supervisor) start(ctx context.Context, a *mailbusv1.Account) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{generation: a.Generation, cancel: cancel, done: make(chan struct{})}
	s.workers[a.Id] = w
	go func() {
		defer close(w.done)
		s.cfg.Work(wctx, a)
	}()
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
