package imapconn

import (
	"errors"
	"testing"
)

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
	if !errors.As(authError(err), &pe) || !pe.Auth {
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
