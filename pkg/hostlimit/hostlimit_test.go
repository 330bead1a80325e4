package hostlimit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// The pace, on an explicit clock: a burst at once, then one per 1/Rate;
// an idle host refills its burst; each host has its own pace.
func TestPace(t *testing.T) {
	l := New(Config{Rate: 10, Burst: 3})
	t0 := time.Unix(1_000_000, 0)
	want := []time.Duration{0, 0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 300 * time.Millisecond}
	for i, w := range want {
		if got := l.delay("imap.example.com", t0); got != w {
			t.Errorf("connection %d at t0: wait %v, want %v", i, got, w)
		}
	}
	if got := l.delay("pop.other.example", t0); got != 0 {
		t.Errorf("another host waits %v", got)
	}
	if got := l.delay("IMAP.Example.COM", t0); got != 400*time.Millisecond {
		t.Errorf("host names are case-insensitive: wait %v, want 400ms", got)
	}
	// After 10 s idle the burst is back, no more.
	t1 := t0.Add(10 * time.Second)
	for i, w := range []time.Duration{0, 0, 0, 100 * time.Millisecond} {
		if got := l.delay("imap.example.com", t1); got != w {
			t.Errorf("after idle, connection %d: wait %v, want %v", i, got, w)
		}
	}
}

// 1,000 accounts of one host starting together at Rate 100/s, Burst 10:
// the k-th connection waits (k-10)/100 s, so the last one about 9.9 s.
func TestRampUpOfManyAccounts(t *testing.T) {
	l := New(Config{Rate: 100, Burst: 10})
	t0 := time.Unix(1_000_000, 0)
	var last time.Duration
	for k := range 1000 {
		d := l.delay("mail.example.com", t0)
		if k < 10 && d != 0 {
			t.Fatalf("connection %d of the burst waits %v", k, d)
		}
		if k >= 10 {
			want := time.Duration(k-9) * 10 * time.Millisecond
			if d < want-time.Millisecond || d > want+time.Millisecond {
				t.Fatalf("connection %d waits %v, want %v", k, d, want)
			}
		}
		last = d
	}
	if last < 9*time.Second {
		t.Fatalf("the 1000th connection waits only %v", last)
	}
}

// The budget: MaxConns connections at once per host; the next waits for a
// release; another host is not held up; a cancelled wait holds nothing.
func TestBudget(t *testing.T) {
	l := New(Config{Rate: -1, MaxConns: 2})
	ctx := context.Background()
	r1, err := l.Acquire(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	r2, err := l.Acquire(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Acquire(ctx, "other"); err != nil {
		t.Fatal(err)
	}
	got := make(chan func(), 1)
	go func() {
		r, err := l.Acquire(ctx, "h")
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-got:
		t.Fatal("a third connection got a place in a budget of 2")
	case <-time.After(100 * time.Millisecond):
	}
	r1()
	r1() // a second call gives nothing back
	var r3 func()
	select {
	case r3 = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting connection did not get the released place")
	}
	if n := l.Open("h"); n != 2 {
		t.Fatalf("open %d, want 2", n)
	}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(cctx, "h"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a wait past the deadline: %v", err)
	}
	if n := l.Open("h"); n != 2 {
		t.Fatalf("a cancelled wait left %d open, want 2", n)
	}
	r2()
	r3()
	if n := l.Open("h"); n != 0 {
		t.Fatalf("open %d after every release", n)
	}
}

// Many goroutines never exceed the budget.
func TestBudgetConcurrent(t *testing.T) {
	l := New(Config{Rate: -1, MaxConns: 3})
	var mu sync.Mutex
	open, peak := 0, 0
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			release, err := l.Acquire(context.Background(), "h")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			open++
			peak = max(peak, open)
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			open--
			mu.Unlock()
			release()
		}()
	}
	wg.Wait()
	if peak > 3 {
		t.Fatalf("%d connections open at once, budget 3", peak)
	}
}

// A paced wait that cannot finish before ctx ends returns at once and
// gives back its place.
func TestPacedWaitCancelled(t *testing.T) {
	l := New(Config{Rate: 0.001, Burst: 1, MaxConns: 1})
	ctx := context.Background()
	r, err := l.Acquire(ctx, "h")
	if err != nil {
		t.Fatal(err)
	}
	r()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := l.Acquire(cctx, "h"); err == nil {
		t.Fatal("a connection 1000 s away was allowed within 1 s")
	}
	if n := l.Open("h"); n != 0 {
		t.Fatalf("open %d after a cancelled wait", n)
	}
}
