// Package storetest runs a real store for the tests of other packages
// (the fetchers, the IMAP gateway, the end-to-end tests): it starts one
// from a store.Config, waits until it serves, and stops it at the end of
// the test.
package storetest

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/mailbus/mailbus/services/store/store"
)

// Wait bounds the store's start and its stop.
const Wait = time.Minute

// Run starts a store with cfg (Run sets cfg.Ready) and waits until it
// serves. It returns the store's gRPC address and a stop function, which
// cancels the store, waits for it and reports an error it ended with;
// stop may be called more than once and is called by t.Cleanup too.
func Run(t testing.TB, cfg store.Config) (addr string, stop func()) {
	t.Helper()
	ready := make(chan string, 1)
	cfg.Ready = func(addr string) { ready <- addr }
	s, err := store.New(cfg)
	if err != nil {
		t.Fatalf("store.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("store Run: %v", err)
				}
			case <-time.After(Wait):
				t.Errorf("store did not stop within %v", Wait)
			}
		})
	}
	t.Cleanup(stop)
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("store stopped before it served: %v", err)
	case <-time.After(Wait):
		t.Fatalf("store not ready within %v", Wait)
	}
	return addr, stop
}
