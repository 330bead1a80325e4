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
// A connection a worker can do without (an IMAP IDLE connection: polling
// covers its folder too) takes its place with TryAcquire instead: it gets
// one only if one is free and nobody waits, and must close and give it
// back when the returned yield channel closes, which happens as soon as
// an Acquire waits for a place on the host. So optional connections never
// keep a required one waiting for long, however long they live.
//
// The limits are per replica: with N replicas a host sees up to N times
// Rate and N times MaxConns. Hosts are compared case-insensitively.
package hostlimit

import (
	"context"
	"errors"
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

	mu       sync.Mutex
	waiting  int                    // Acquire calls waiting for a place
	optional map[*optional]struct{} // places held through TryAcquire
}

// optional is a place held by an optional connection (TryAcquire).
type optional struct {
	yield chan struct{} // closed when a required connection wants the place
	asked bool
}

// ErrNoPlace is TryAcquire's answer when the host's budget has no free
// place, or a required connection is waiting for one.
var ErrNoPlace = errors.New("hostlimit: no free connection place")

// askYield asks one optional connection not asked before to give its
// place back. h.mu is held.
func (h *host) askYield() {
	for o := range h.optional {
		if !o.asked {
			o.asked = true
			close(o.yield)
			return
		}
	}
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
		h = &host{pace: rate.NewLimiter(limit, l.cfg.Burst), optional: map[*optional]struct{}{}}
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
// While it waits for a place, optional connections (TryAcquire) are asked
// to give theirs back, one for each waiting Acquire. It returns ctx's
// error if ctx ends first, holding nothing.
func (l *Limiter) Acquire(ctx context.Context, hostname string) (release func(), err error) {
	h := l.host(hostname)
	if h.slots != nil {
		select {
		case h.slots <- struct{}{}:
		default:
			h.mu.Lock()
			h.waiting++
			h.askYield()
			h.mu.Unlock()
			var err error
			select {
			case h.slots <- struct{}{}:
			case <-ctx.Done():
				err = ctx.Err()
			}
			h.mu.Lock()
			h.waiting--
			h.mu.Unlock()
			if err != nil {
				return nil, err
			}
		}
	}
	return l.paced(ctx, h, nil)
}

// Waiting reports whether a connection to hostname would have to wait for
// a place in the budget now (for a status; the answer may be stale at
// once).
func (l *Limiter) Waiting(hostname string) bool {
	h := l.host(hostname)
	return h.slots != nil && len(h.slots) == cap(h.slots)
}

// TryAcquire takes a place in hostname's budget for an optional
// connection if one is free and no Acquire is waiting, or fails with
// ErrNoPlace at once; then it waits for the connection's turn in the
// host's pace. The returned yield channel closes when an Acquire waits for
// a place: the caller should then close the connection and call release.
// Without a budget yield never closes.
func (l *Limiter) TryAcquire(ctx context.Context, hostname string) (release func(), yield <-chan struct{}, err error) {
	h := l.host(hostname)
	o := &optional{yield: make(chan struct{})}
	if h.slots != nil {
		h.mu.Lock()
		if h.waiting > 0 {
			h.mu.Unlock()
			return nil, nil, ErrNoPlace
		}
		select {
		case h.slots <- struct{}{}:
		default:
			h.mu.Unlock()
			return nil, nil, ErrNoPlace
		}
		h.optional[o] = struct{}{}
		h.mu.Unlock()
	}
	release, err = l.paced(ctx, h, o)
	if err != nil {
		return nil, nil, err
	}
	return release, o.yield, nil
}

// paced waits for a connection's turn in h's pace once it holds its place
// (o for an optional one), and returns its release.
func (l *Limiter) paced(ctx context.Context, h *host, o *optional) (release func(), err error) {
	var once sync.Once
	release = func() {
		once.Do(func() {
			if h.slots == nil {
				return
			}
			if o != nil {
				h.mu.Lock()
				delete(h.optional, o)
				h.mu.Unlock()
			}
			<-h.slots
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
