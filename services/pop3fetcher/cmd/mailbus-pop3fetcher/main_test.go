package main

import "testing"

func TestUsage(t *testing.T) {
	cases := []struct {
		args []string
		want int
	}{
		{[]string{"--help"}, 0},
		{[]string{"--no-such-flag"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"--log-level", "loud"}, 2},
		{[]string{"--log-format", "xml"}, 2},
		{[]string{"--store", ""}, 2},
		{[]string{"--pipeline-window", "0"}, 2},
		{[]string{"--timeout", "soon"}, 2},
		{[]string{"--ca-file", "/nonexistent/ca.pem"}, 1},
		{[]string{"--ownership"}, 2}, // without --nats
		{[]string{"--ownership", "--nats", "nats://127.0.0.1:1", "--once"}, 2},
		{[]string{"--host-rate", "0"}, 2},
		{[]string{"--host-burst", "0"}, 2},
	}
	for _, c := range cases {
		if got := run(c.args); got != c.want {
			t.Errorf("run(%q) = %d, want %d", c.args, got, c.want)
		}
	}
}
