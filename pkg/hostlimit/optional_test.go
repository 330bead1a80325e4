package hostlimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestOptionalYieldsToRequired: with a budget of two, a required
// connection and an optional one fill the host; a second required
// connection waiting for a place asks the optional one to yield, gets its
// place once it is released, and while it waits no new optional
// connection is let in. An optional connection is never asked while a
// place is free, nor for a waiting connection of another host.
func TestOptionalYieldsToRequired(t *testing.T) {
	ctx := context.Background()
	l := New(Config{Rate: -1, MaxConns: 2})
	work, err := l.Acquire(ctx, "imap.example.com")
	if err != nil {
		t.Fatal(err)
	}
	idle, yield, err := l.TryAcquire(ctx, "IMAP.example.com")
	if err != nil {
		t.Fatalf("optional place while one is free: %v", err)
	}
	if _, _, err := l.TryAcquire(ctx, "imap.example.com"); !errors.Is(err, ErrNoPlace) {
		t.Fatalf("optional place on a full host: %v, want ErrNoPlace", err)
	}
	if !l.Waiting("imap.example.com") || l.Waiting("other.example.com") {
		t.Fatal("Waiting does not tell a full host from a free one")
	}
	otherRelease, err := l.Acquire(ctx, "other.example.com")
	if err != nil {
		t.Fatal(err)
	}
	otherRelease()
	select {
	case <-yield:
		t.Fatal("optional connection asked to yield without a required one waiting on its host")
	default:
	}

	got := make(chan func(), 1)
	go func() {
		r, err := l.Acquire(ctx, "imap.example.com")
		if err != nil {
			t.Error(err)
		}
		got <- r
	}()
	select {
	case <-yield:
	case <-time.After(10 * time.Second):
		t.Fatal("the optional connection was not asked to yield to a waiting required one")
	}
	if _, _, err := l.TryAcquire(ctx, "imap.example.com"); !errors.Is(err, ErrNoPlace) {
		t.Fatalf("optional place while a required connection waits: %v, want ErrNoPlace", err)
	}
	select {
	case <-got:
		t.Fatal("the required connection got a place before the optional one gave it back")
	default:
	}
	idle()
	idle() // twice does nothing
	var second func()
	select {
	case second = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("the required connection did not get the yielded place")
	}
	if n := l.Open("imap.example.com"); n != 2 {
		t.Fatalf("%d places held, want 2", n)
	}
	work()
	second()
	if _, yield, err := l.TryAcquire(ctx, "imap.example.com"); err != nil || yield == nil {
		t.Fatalf("optional place on an empty host: %v", err)
	}
}

// TestWaitingAcquireCancelled: a required connection whose context ends
// while it waits holds nothing and no longer keeps optional ones out.
func TestWaitingAcquireCancelled(t *testing.T) {
	l := New(Config{Rate: -1, MaxConns: 1})
	release, err := l.Acquire(context.Background(), "h")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := l.Acquire(ctx, "h"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("cancelled wait: %v", err)
	}
	release()
	if n := l.Open("h"); n != 0 {
		t.Fatalf("%d places held after the cancelled wait", n)
	}
	if _, _, err := l.TryAcquire(context.Background(), "h"); err != nil {
		t.Fatalf("optional place after the cancelled wait: %v", err)
	}
}
