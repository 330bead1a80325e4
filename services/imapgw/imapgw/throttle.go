package imapgw

import (
	"net"
	"strings"
	"sync"
	"time"
)

// loginThrottle counts login attempts by remote address and user name.
// An attempt counts as it starts (so that parallel connections do not
// each get one more) and is taken back when it succeeds (or fails for a
// reason of the store's): what stays counted are failures. After perUser
// of them with one user name from one address, or perAddr with any user
// names from it, within window, further logins with that name (or from
// that address) fail at once, without asking the store, until the window
// that began with the first one has passed. perAddr is much higher than
// perUser so that one client retrying a revoked token does not lock out
// the others behind the same address (NAT, a proxy, everything local to
// mailbus serve) whose tokens are right.
//
// An address is an IPv4 address or an IPv6 /64 (one host usually has a
// whole /64). The table holds at most maxEntries entries: when it is full
// the expired ones are dropped, then arbitrary ones, so memory stays
// bounded at the cost of an attacker with very many addresses getting a
// few more attempts.
type loginThrottle struct {
	perUser, perAddr int
	window           time.Duration
	maxEntries       int
	now              func() time.Time

	mu      sync.Mutex
	entries map[throttleKey]*attempts
}

// throttleKey is an address's entry (user "") or an address and user
// name's.
type throttleKey struct {
	addr, user string
}

type attempts struct {
	since time.Time
	n     int
}

// maxThrottleEntries bounds the login throttle's table.
const maxThrottleEntries = 100000

// maxUserKey bounds the bytes of a user name kept as a key.
const maxUserKey = 256

func newLoginThrottle(perUser, perAddr int, window time.Duration) *loginThrottle {
	return &loginThrottle{perUser: perUser, perAddr: perAddr, window: window, maxEntries: maxThrottleEntries,
		now: time.Now, entries: map[throttleKey]*attempts{}}
}

// addrKey is the throttle's (and the pre-login connection limit's) key of
// a remote address: the IPv4 address or the IPv6 /64.
func addrKey(a net.Addr) string {
	var ip net.IP
	if tcp, ok := a.(*net.TCPAddr); ok {
		ip = tcp.IP
	} else {
		ip = net.ParseIP(remoteHost(a))
	}
	if ip == nil {
		return remoteHost(a)
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

func userKey(user string) string {
	user = strings.ToLower(user)
	if len(user) > maxUserKey {
		user = user[:maxUserKey]
	}
	return user
}

// entry returns the current entry of k, a new one if it had none or its
// window has passed. Called with mu held.
func (t *loginThrottle) entry(k throttleKey, now time.Time) *attempts {
	a := t.entries[k]
	if a != nil && now.Sub(a.since) < t.window {
		return a
	}
	if a == nil && len(t.entries) >= t.maxEntries {
		for k, a := range t.entries {
			if now.Sub(a.since) >= t.window {
				delete(t.entries, k)
			}
		}
		for k := range t.entries {
			if len(t.entries) < t.maxEntries*9/10 {
				break
			}
			delete(t.entries, k)
		}
	}
	a = &attempts{since: now}
	t.entries[k] = a
	return a
}

// begin counts an attempt of user from addr; false (nothing counted) when
// too many failed within the window.
func (t *loginThrottle) begin(addr, user string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	ak, uk := throttleKey{addr: addr}, throttleKey{addr: addr, user: userKey(user)}
	a := t.entry(ak, now)
	u := t.entry(uk, now)
	if a.n >= t.perAddr || u.n >= t.perUser {
		t.dropIfZero(ak, a)
		t.dropIfZero(uk, u)
		return false
	}
	a.n++
	u.n++
	return true
}

// end ends an attempt begin counted: a failed one stays counted, any other
// is taken back.
func (t *loginThrottle) end(addr, user string, failed bool) {
	if failed {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, k := range []throttleKey{{addr: addr}, {addr: addr, user: userKey(user)}} {
		if a := t.entries[k]; a != nil {
			a.n = max(a.n-1, 0)
			t.dropIfZero(k, a)
		}
	}
}

// dropIfZero forgets an entry with nothing counted. Called with mu held.
func (t *loginThrottle) dropIfZero(k throttleKey, a *attempts) {
	if a.n == 0 && t.entries[k] == a {
		delete(t.entries, k)
	}
}

// preAuthConns counts the connections of each address that have not
// logged in: at most max at once.
type preAuthConns struct {
	max int

	mu    sync.Mutex
	conns map[string]int
}

func (p *preAuthConns) acquire(addr string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[addr] >= p.max {
		return false
	}
	p.conns[addr]++
	return true
}

func (p *preAuthConns) release(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns[addr]--; p.conns[addr] <= 0 {
		delete(p.conns, addr)
	}
}
