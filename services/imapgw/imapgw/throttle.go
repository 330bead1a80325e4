package imapgw

import (
	"sync"
	"time"
)

// loginThrottle counts failed logins per remote address: after max
// failures within window, logins from that address fail at once (without
// asking the store) until the window that began with the first failure
// has passed.
type loginThrottle struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu    sync.Mutex
	hosts map[string]*failures
}

type failures struct {
	since time.Time
	n     int
}

func newLoginThrottle(max int, window time.Duration) *loginThrottle {
	return &loginThrottle{max: max, window: window, now: time.Now, hosts: map[string]*failures{}}
}

func (t *loginThrottle) allowed(host string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	f := t.hosts[host]
	if f == nil {
		return true
	}
	if t.now().Sub(f.since) >= t.window {
		delete(t.hosts, host)
		return true
	}
	return f.n < t.max
}

func (t *loginThrottle) failed(host string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	// Forget expired entries now and then, so that the map stays small.
	if len(t.hosts) > 10000 {
		for h, f := range t.hosts {
			if now.Sub(f.since) >= t.window {
				delete(t.hosts, h)
			}
		}
	}
	f := t.hosts[host]
	if f == nil || now.Sub(f.since) >= t.window {
		f = &failures{since: now}
		t.hosts[host] = f
	}
	f.n++
}
