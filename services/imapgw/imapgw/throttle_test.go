package imapgw

import (
	"net"
	"testing"
	"time"
)

// TestThrottleUnit: attempts count as they start (parallel ones too),
// successes are taken back, IPv6 addresses count by /64, and the table
// stays bounded.
func TestThrottleUnit(t *testing.T) {
	now := time.Unix(0, 0)
	th := newLoginThrottle(2, 3, time.Minute)
	th.now = func() time.Time { return now }
	a := addrKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:3::1"), Port: 1})
	b := addrKey(&net.TCPAddr{IP: net.ParseIP("2001:db8:1:2:ffff::9"), Port: 2})
	if a != b || a != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 keys %q %q, want one /64", a, b)
	}
	if k := addrKey(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}); k != "192.0.2.1" {
		t.Errorf("IPv4 key %q", k)
	}
	// Two attempts in flight: a third with that name is refused at once.
	if !th.begin(a, "ann") || !th.begin(b, "Ann") {
		t.Fatal("first attempts refused")
	}
	if th.begin(a, "ann") {
		t.Error("a third parallel attempt was allowed")
	}
	th.end(a, "ann", false) // one succeeded: taken back
	if !th.begin(a, "ann") {
		t.Error("an attempt after a success was refused")
	}
	th.end(a, "ann", true)
	th.end(a, "ann", true)
	// Address: 2 failures of ann; one more name fails, then the address
	// is full.
	if !th.begin(a, "bob") {
		t.Fatal("another name refused before the address's ceiling")
	}
	th.end(a, "bob", true)
	if th.begin(a, "carol") {
		t.Error("an attempt above the address's ceiling was allowed")
	}
	now = now.Add(time.Minute)
	if !th.begin(a, "ann") {
		t.Error("an attempt after the window was refused")
	}
	th.end(a, "ann", false)

	small := newLoginThrottle(1, 1, time.Hour)
	small.maxEntries = 100
	for i := range 1000 {
		ip := net.IPv4(10, 0, byte(i>>8), byte(i))
		small.begin(addrKey(&net.TCPAddr{IP: ip}), "x")
		if n := len(small.entries); n > small.maxEntries {
			t.Fatalf("%d entries, at most %d", n, small.maxEntries)
		}
	}
}
