package main

import "testing"

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"extra-argument"}, {"--log-level", "loud"}, {"--retry-window", "soon"},
		{"--nats", ""}, {"--nats", "nats://127.0.0.1:1"} /* no --secret-key-file */} {
		t.Setenv("MAILBUS_SECRET_KEY", "")
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	if code := run([]string{"--help"}); code != 0 {
		t.Errorf("run(--help) = %d, want 0", code)
	}
}
