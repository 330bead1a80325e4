// Package hostlimit paces the connections a fetcher replica opens to
// upstream mail servers, per host: at most Rate new connections per second
// (with a Burst), so that a replica starting with 1,000 accounts on one
// provider does not open 1,000 connections at once, and at most MaxConns
// connections open at a time (a per-host budget: providers limit
// concurrent sessions per client address).
//
// A worker calls Acquire before it dials and calls the returned release
// when the connection is closed:
//
//	release, err := limiter.Acquire(ctx, account.Host)
//	if err != nil {
//		return err // ctx ended
//	}
//	defer release()
//	conn, err := dial(...)
//
// The limits are per replica: with N replicas a host sees up to N times
// Rate and N times MaxConns. Hosts are compared case-insensitively.
package hostlimit

import (
	"context"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Defaults of Config.
const (
	DefaultRate  = 10.0
	DefaultBurst = 5
)

// Config configures a Limiter; the zero value takes the defaults.
type Config struct {
	// Rate is the number of new connections per second per host; 0 means
	// DefaultRate, a negative value means no pacing.
	Rate float64
	// Burst is how many connections may start at once after an idle
	// period; 0 means DefaultBurst.
	Burst int
	// MaxConns is the number of connections open at once per host; 0 means
	// no budget.
	MaxConns int
}

// Limiter paces and budgets connections per host. Safe for concurrent use.
type Limiter struct {
	cfg   Config
	mu    sync.Mutex
	hosts map[string]*host
}

type host struct {
	pace  *rate.Limiter
	slots chan struct{} // nil: no budget
}

// New returns a Limiter.
func New(cfg Config) *Limiter {
	if cfg.Rate == 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.Burst <= 0 {
		cfg.Burst = DefaultBurst
	}
	return &Limiter{cfg: cfg, hosts: map[string]*host{}}
}

func (l *Limiter) host(name string) *host {
	name = strings.ToLower(name)
	l.mu.Lock()
	defer l.mu.Unlock()
	h := l.hosts[name]
	if h == nil {
		limit := rate.Limit(l.cfg.Rate)
		if l.cfg.Rate < 0 {
			limit = rate.Inf
		}
		h = &host{pace: rate.NewLimiter(limit, l.cfg.Burst)}
		if l.cfg.MaxConns > 0 {
			h.slots = make(chan struct{}, l.cfg.MaxConns)
		}
		l.hosts[name] = h
	}
	return h
}

// Acquire waits for a place in hostname's budget and then for its turn in
// the host's pace, and returns the function that gives the place back
// (call it once the connection is closed; calling it again does nothing).
// It returns ctx's error if ctx ends first, holding nothing.
func (l *Limiter) Acquire(ctx context.Context, hostname string) (release func(), err error) {
	h := l.host(hostname)
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			if h.slots != nil {
				<-h.slots
			}
		})
	}
	if err := h.pace.Wait(ctx); err != nil {
		release()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	return release, nil
}

// delay reserves a connection for hostname at now and returns how long it
// must wait: the pacing alone, for tests.
func (l *Limiter) delay(hostname string, now time.Time) time.Duration {
	return l.host(hostname).pace.ReserveN(now, 1).DelayFrom(now)
}

// Open returns the number of connections counted against hostname's
// budget now.
func (l *Limiter) Open(hostname string) int {
	h := l.host(hostname)
	if h.slots == nil {
		return 0
	}
	return len(h.slots)
}
