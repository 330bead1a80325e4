package main

import "testing"

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"extra-argument"}, {"--log-level", "loud"}, {"--timeout", "soon"},
		{"--ownership", "--nats", ""}, {"--connections", "0"}, {"--host-rate", "0"}, {"--ownership", "--kv-replicas", "9"}} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	if code := run([]string{"--help"}); code != 0 {
		t.Errorf("run(--help) = %d, want 0", code)
	}
}
