package accountrun

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

type fakeLister struct {
	mu       sync.Mutex
	accounts []*mailbusv1.Account
	// listed, when set, gets a value at each list.
	listed chan struct{}
}

func (f *fakeLister) ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.listed != nil {
		f.listed <- struct{}{}
	}
	var out []*mailbusv1.Account
	for _, a := range f.accounts {
		if req.Protocol == mailbusv1.Protocol_PROTOCOL_UNSPECIFIED || a.Protocol == req.Protocol {
			out = append(out, a)
		}
	}
	return &mailbusv1.ListAccountsResponse{Accounts: out}, nil
}

func (f *fakeLister) set(accts ...*mailbusv1.Account) {
	f.mu.Lock()
	f.accounts = accts
	f.mu.Unlock()
}

func TestSupervisorFollowsAccounts(t *testing.T) {
	lister := &fakeLister{}
	var mu sync.Mutex
	starts := map[string]int{}
	running := map[string]bool{}
	s := New(Config{
		Accounts: lister,
		Refresh:  time.Hour, // only Kick drives it
		Work: func(ctx context.Context, a *mailbusv1.Account) {
			mu.Lock()
			starts[a.Id]++
			running[a.Id] = true
			mu.Unlock()
			<-ctx.Done()
			mu.Lock()
			running[a.Id] = false
			mu.Unlock()
		},
		Filter: func(a *mailbusv1.Account) bool { return a.Id != "skip" },
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()

	check := func(what string, want map[string]int, wantRunning ...string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			mu.Lock()
			var run []string
			for id, r := range running {
				if r {
					run = append(run, id)
				}
			}
			ok := len(starts) == len(want)
			for id, n := range want {
				ok = ok && starts[id] == n
			}
			slices.Sort(run)
			ok = ok && slices.Equal(run, wantRunning)
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: starts %v running %v, want %v %v", what, starts, run, want, wantRunning)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	lister.set(&mailbusv1.Account{Id: "1", Generation: 1}, &mailbusv1.Account{Id: "2", Generation: 1}, &mailbusv1.Account{Id: "skip", Generation: 1})
	s.Kick()
	check("start", map[string]int{"1": 1, "2": 1}, "1", "2")
	lister.set(&mailbusv1.Account{Id: "1", Generation: 2}, &mailbusv1.Account{Id: "2", Generation: 1})
	s.Kick()
	check("generation bump restarts", map[string]int{"1": 2, "2": 1}, "1", "2")
	lister.set(&mailbusv1.Account{Id: "1", Generation: 2})
	s.Kick()
	check("removed account stops", map[string]int{"1": 2, "2": 1}, "1")
	cancel()
	<-done
	check("shutdown stops all", map[string]int{"1": 2, "2": 1})
}

func (f *fakeLister) GetAccount(ctx context.Context, req *mailbusv1.GetAccountRequest) (*mailbusv1.GetAccountResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.accounts {
		if a.Id == req.AccountId {
			return &mailbusv1.GetAccountResponse{Account: a}, nil
		}
	}
	return nil, status.Error(codes.NotFound, "no such account")
}

// fakeChanges is a store's WatchAccounts: each stream answers ready, then
// what is sent on answers.
type fakeChanges struct {
	answers chan *mailbusv1.WatchAccountsResponse
}

func (f *fakeChanges) WatchAccounts(ctx context.Context, in *mailbusv1.WatchAccountsRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mailbusv1.WatchAccountsResponse], error) {
	return &fakeStream{ctx: ctx, f: f, ready: true}, nil
}

type fakeStream struct {
	grpc.ClientStream
	ctx   context.Context
	f     *fakeChanges
	ready bool
}

func (s *fakeStream) Recv() (*mailbusv1.WatchAccountsResponse, error) {
	if s.ready {
		s.ready = false
		return &mailbusv1.WatchAccountsResponse{Ready: true}, nil
	}
	select {
	case r := <-s.f.answers:
		return r, nil
	case <-s.ctx.Done():
		return nil, s.ctx.Err()
	}
}

// TestSupervisorFollowsAnnouncements: with lists only at the start (an
// hour's refresh, no kick), announced accounts are started, restarted on
// a new generation and stopped when gone; one the Filter refuses (another
// replica's) or of another protocol is not started.
func TestSupervisorFollowsAnnouncements(t *testing.T) {
	lister := &fakeLister{listed: make(chan struct{}, 16)}
	changes := &fakeChanges{answers: make(chan *mailbusv1.WatchAccountsResponse)}
	started := make(chan string, 16)
	stopped := make(chan string, 16)
	s := New(Config{
		Accounts: lister,
		Changes:  changes,
		Protocol: mailbusv1.Protocol_PROTOCOL_IMAP,
		Refresh:  time.Hour,
		// As under ownership: account "other" is another replica's.
		Filter: func(a *mailbusv1.Account) bool { return a.Id != "other" },
		Work: func(ctx context.Context, a *mailbusv1.Account) {
			started <- a.Id + "@" + strconv.FormatUint(a.Generation, 10)
			<-ctx.Done()
			stopped <- a.Id + "@" + strconv.FormatUint(a.Generation, 10)
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	expect := func(ch chan string, want string) {
		t.Helper()
		select {
		case got := <-ch:
			if got != want {
				t.Fatalf("got %s, want %s", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("nothing, want %s", want)
		}
	}
	announce := func(ids ...string) {
		changes.answers <- &mailbusv1.WatchAccountsResponse{AccountIds: ids}
	}
	// The list at the start, and the one once the stream is ready; there
	// is no other (the refresh is an hour).
	<-lister.listed
	<-lister.listed
	lister.set(&mailbusv1.Account{Id: "1", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Generation: 1},
		&mailbusv1.Account{Id: "other", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Generation: 1})
	announce("other") // not this replica's: no worker
	announce("1")
	expect(started, "1@1")
	lister.set(&mailbusv1.Account{Id: "1", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Generation: 2},
		&mailbusv1.Account{Id: "2", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Generation: 1})
	announce("1", "2") // 2 is of another protocol: no worker
	expect(stopped, "1@1")
	expect(started, "1@2")
	lister.set()
	announce("1")
	expect(stopped, "1@2")
	if r := s.Running(); len(r) != 0 {
		t.Errorf("running after the account was deleted: %v", r)
	}
	if n := len(lister.listed); n != 0 {
		t.Errorf("%d lists after the start; want the announcements alone", n)
	}
	cancel()
	<-done
}
