package main

import "testing"

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{{"--no-such-flag"}, {"extra-argument"}, {"--log-level", "loud"},
		{"--listen", "0.0.0.0:1143"} /* plaintext beyond loopback without --insecure */, {"--tls-listen", "127.0.0.1:0"} /* no certificate */} {
		if code := run(args); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	if code := run([]string{"--help"}); code != 0 {
		t.Errorf("run(--help) = %d, want 0", code)
	}
}
