package imapsync

import (
	"testing"
	"time"
)

func TestMatchPattern(t *testing.T) {
	for _, c := range []struct {
		pattern, name string
		want          bool
	}{
		{"*", "a/b/c", true},
		{"%", "a", true},
		{"%", "a/b", false},
		{"a/%", "a/b", true},
		{"a/%", "a/b/c", false},
		{"a/*", "a/b/c", true},
		{"inbox", "INBOX", true},
		{"Archive", "Archive", true},
		{"Archive", "Archives", false},
		{"Arch*", "Archives", true},
		{"*/Spam", "Lists/Spam", true},
		{"*/Spam", "Spam", false},
	} {
		if got := matchPattern(c.pattern, c.name, "/"); got != c.want {
			t.Errorf("matchPattern(%q, %q) = %v, want %v", c.pattern, c.name, got, c.want)
		}
	}
}

func TestHeaderMessageID(t *testing.T) {
	for in, want := range map[string]string{
		"Message-ID: <a@b>\r\n\r\n":   "a@b",
		"message-id:   <x.y@z>  \r\n": "x.y@z",
		"\r\n":                        "",
	} {
		if got := normMessageID(headerMessageID([]byte(in))); got != want {
			t.Errorf("headerMessageID(%q) = %q, want %q", in, got, want)
		}
	}
}

// A silent IDLE connection is found at the next IDLE restart: the default
// must be minutes, not the 29 minutes RFC 9051 allows.
func TestIdleRestartDefault(t *testing.T) {
	s, err := New(Config{StoreAddr: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.cfg.IdleRestart; d != DefaultIdleRestart || d > 5*time.Minute {
		t.Errorf("IdleRestart %v (default %v), want at most 5 min", d, DefaultIdleRestart)
	}
}
