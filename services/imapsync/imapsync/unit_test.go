package imapsync

import (
	"errors"
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

func TestXOAuth2(t *testing.T) {
	c := NewXOAuth2Client("alice@example.org", "tok")
	mech, ir, err := c.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user=alice@example.org\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("Start = %q %q %v", mech, ir, err)
	}
	// A failure challenge (JSON) is the verdict: no response, the error.
	resp, err := c.Next([]byte(`{"status":"401"}`))
	var refused *TokenRefusedError
	if !errors.As(err, &refused) || refused.Status != `{"status":"401"}` || resp != nil {
		t.Fatalf("Next = %q %v", resp, err)
	}
	var pe *PermanentError
	if !errors.As(authError(err), &pe) || !pe.auth {
		t.Fatalf("authError(%v) = %v, want a permanent authentication failure", err, authError(err))
	}
	// OAUTHBEARER answers it with %x01 (RFC 7628 section 3.2.3).
	ob := NewOAuthBearerClient("a,b=c", "tok")
	if mech, ir, _ := ob.Start(); mech != "OAUTHBEARER" || string(ir) != "n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01" {
		t.Fatalf("OAUTHBEARER Start = %q %q", mech, ir)
	}
	if resp, err := ob.Next([]byte(`{"status":"invalid_token"}`)); err != nil || string(resp) != "\x01" {
		t.Fatalf("OAUTHBEARER Next = %q %v", resp, err)
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
