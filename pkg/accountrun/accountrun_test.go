package accountrun

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

type fakeLister struct {
	mu       sync.Mutex
	accounts []*mailbusv1.Account
}

func (f *fakeLister) ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &mailbusv1.ListAccountsResponse{Accounts: slices.Clone(f.accounts)}, nil
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
