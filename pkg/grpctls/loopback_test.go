package grpctls

import (
	"errors"
	"net"
	"testing"
)

// TestIsLoopback: "localhost" counts as loopback only when it resolves
// to loopback addresses alone (issue 16).
func TestIsLoopback(t *testing.T) {
	ips := func(s ...string) []net.IP {
		var out []net.IP
		for _, a := range s {
			out = append(out, net.ParseIP(a))
		}
		return out
	}
	for _, tc := range []struct {
		addr     string
		resolved []net.IP
		lookErr  error
		want     bool
	}{
		{"127.0.0.1:7400", nil, nil, true},
		{"[::1]:7400", nil, nil, true},
		{"127.0.0.2:7400", nil, nil, true},
		{"0.0.0.0:7400", nil, nil, false},
		{":7400", nil, nil, false},
		{"[::]:7400", nil, nil, false},
		{"192.0.2.1:7400", nil, nil, false},
		// IPv4-mapped IPv6: Go listens on the IPv4 address itself.
		{"[::ffff:127.0.0.1]:7400", nil, nil, true},
		{"[::ffff:0.0.0.0]:7400", nil, nil, false},
		{"[::ffff:192.0.2.1]:7400", nil, nil, false},
		// A name that looks like a loopback address is a name.
		{"127.0.0.1.nip.io:7400", ips("127.0.0.1"), nil, false},
		{"0177.0.0.1:7400", nil, nil, false},
		{"example.com:7400", ips("127.0.0.1"), nil, false},
		{"localhost:7400", ips("127.0.0.1", "::1"), nil, true},
		{"LOCALHOST:7400", ips("127.0.0.1"), nil, true},
		{"localhost:7400", ips("127.0.0.1", "192.0.2.7"), nil, false},
		{"localhost:7400", ips("192.0.2.7"), nil, false},
		{"localhost:7400", nil, nil, false},
		{"localhost:7400", nil, errors.New("no resolver"), false},
	} {
		lookup := func(host string) ([]net.IP, error) { return tc.resolved, tc.lookErr }
		if got := isLoopback(tc.addr, lookup); got != tc.want {
			t.Errorf("isLoopback(%q) with localhost = %v, %v: %v, want %v", tc.addr, tc.resolved, tc.lookErr, got, tc.want)
		}
	}
	// This machine's localhost is loopback.
	if !IsLoopback("localhost:7400") {
		t.Error(`IsLoopback("localhost:7400") = false on this machine`)
	}
}
