package oauthflow_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/oauthflow"
	"github.com/mailbus/mailbus/pkg/oauthtest/oidcserver"
)

// waitLong bounds a flow; nothing here is timed.
const waitLong = 2 * time.Minute

func config(s *oidcserver.Server) *oauthflow.Config {
	return &oauthflow.Config{Endpoints: oauthflow.Endpoints{AuthURL: s.AuthURL, TokenURL: s.TokenURL, DeviceAuthURL: s.DeviceAuthURL},
		ClientID: s.ClientID, ClientSecret: s.ClientSecret, Scopes: []string{"offline_access", "mail"}}
}

// browser runs the browser flow with act as the user: act gets the URL
// the flow printed and does what a browser would.
func browser(t *testing.T, c *oauthflow.Config, act func(authURL string)) (oauthflow.Token, error, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	urls := make(chan string, 1)
	done := make(chan struct{})
	var tok oauthflow.Token
	var err error
	go func() {
		defer close(done)
		tok, err = c.Browser(ctx, func(u string) { urls <- u })
	}()
	var u string
	select {
	case u = <-urls:
		act(u)
	case <-done:
	}
	<-done
	return tok, err, u
}

func follow(t *testing.T, loc *url.URL) int {
	t.Helper()
	resp, err := http.Get(loc.String())
	if err != nil {
		t.Fatalf("the browser following the redirect to %s: %v", loc.Host, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// refused reports that nothing listens at the redirect URI of authURL.
func refused(t *testing.T, authURL string) {
	t.Helper()
	u, _ := url.Parse(authURL)
	r, _ := url.Parse(u.Query().Get("redirect_uri"))
	if c, err := net.DialTimeout("tcp", r.Host, 10*time.Second); err == nil {
		c.Close()
		t.Errorf("the loopback listener %s still accepts connections after the flow", r.Host)
	}
}

// TestBrowser: the code flow with PKCE against a real authorization
// server (which refuses a request without S256), the test as the
// browser: the refresh token works, the access token is active at the
// introspection endpoint, and the loopback listener is closed afterwards.
func TestBrowser(t *testing.T) {
	s := oidcserver.Start(t, oidcserver.Options{AccessTokenLifetime: 5 * time.Second})
	c := config(s)
	var status int
	tok, err, authURL := browser(t, c, func(u string) {
		loc, err := s.Authorize(context.Background(), u)
		if err != nil {
			t.Errorf("authorize: %v", err)
			return
		}
		if loc.Hostname() != "127.0.0.1" {
			t.Errorf("redirect to %s, want 127.0.0.1", loc.Host)
		}
		status = follow(t, loc)
	})
	if err != nil {
		t.Fatalf("browser flow: %v", err)
	}
	if status != http.StatusOK {
		t.Errorf("the loopback answered the browser HTTP %d", status)
	}
	q := mustQuery(t, authURL)
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || len(q.Get("state")) < 32 {
		t.Errorf("authorization request without PKCE S256 or a strong state: %v", q)
	}
	if tok.RefreshToken == "" || tok.AccessToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token: refresh %t access %t expiry %v", tok.RefreshToken != "", tok.AccessToken != "", tok.Expiry)
	}
	in, err := s.Introspect(context.Background(), tok.AccessToken)
	if err != nil || !in.Active || in.Username != s.User.Email {
		t.Errorf("introspect: %+v %v", in, err)
	}
	refused(t, authURL)

	// The refresh token rotates: the new one works, the old one is
	// refused with invalid_grant.
	ctx := context.Background()
	next, err := c.Refresh(ctx, tok.RefreshToken)
	if err != nil || next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh: %v (rotated: %t)", err, next.RefreshToken != tok.RefreshToken)
	}
	var oe *oauthflow.Error
	if _, err := c.Refresh(ctx, tok.RefreshToken); !errors.As(err, &oe) || oe.Code != "invalid_grant" {
		t.Errorf("the old refresh token: %v, want invalid_grant", err)
	}
	bad := *c
	bad.ClientSecret = "wrong"
	if _, err := bad.Refresh(ctx, next.RefreshToken); !errors.As(err, &oe) || !oe.ClientRefused() || strings.Contains(err.Error(), "wrong") {
		t.Errorf("wrong client secret: %v, want invalid_client without the secret", err)
	}
}

func mustQuery(t *testing.T, raw string) url.Values {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query()
}

// TestBrowserRefusals: a redirect with another state, an error redirect
// (the user denied) and a wrong client secret each end the flow with an
// error that says so, and the listener is closed after each.
func TestBrowserRefusals(t *testing.T) {
	s := oidcserver.Start(t, oidcserver.Options{})
	t.Run("state mismatch", func(t *testing.T) {
		_, err, authURL := browser(t, config(s), func(u string) {
			loc, err := s.Authorize(context.Background(), u)
			if err != nil {
				t.Errorf("authorize: %v", err)
				return
			}
			q := loc.Query()
			q.Set("state", "forged")
			loc.RawQuery = q.Encode()
			if st := follow(t, loc); st != http.StatusBadRequest {
				t.Errorf("forged redirect answered HTTP %d", st)
			}
		})
		if !errors.Is(err, oauthflow.ErrStateMismatch) {
			t.Errorf("err %v, want ErrStateMismatch", err)
		}
		refused(t, authURL)
	})
	t.Run("access denied", func(t *testing.T) {
		_, err, authURL := browser(t, config(s), func(u string) {
			loc, err := s.Deny(context.Background(), u)
			if err != nil {
				t.Errorf("deny: %v", err)
				return
			}
			follow(t, loc)
		})
		var oe *oauthflow.Error
		if !errors.As(err, &oe) || oe.Code != "access_denied" || oe.Endpoint != "authorization" {
			t.Errorf("err %v, want access_denied from the authorization request", err)
		}
		refused(t, authURL)
	})
	t.Run("wrong client secret", func(t *testing.T) {
		c := config(s)
		c.ClientSecret = "not-the-secret"
		_, err, _ := browser(t, c, func(u string) {
			loc, err := s.Authorize(context.Background(), u)
			if err != nil {
				t.Errorf("authorize: %v", err)
				return
			}
			follow(t, loc)
		})
		var oe *oauthflow.Error
		if !errors.As(err, &oe) || !oe.ClientRefused() || strings.Contains(err.Error(), "not-the-secret") {
			t.Errorf("err %v, want invalid_client without the secret", err)
		}
	})
	t.Run("context ends", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		var authURL string
		_, err := config(s).Browser(ctx, func(u string) { authURL = u; cancel() })
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v, want context.Canceled", err)
		}
		refused(t, authURL)
	})
}

// TestDevice: the device flow against the same server, with the first
// poll answered slow_down: the flow waits the interval plus 5 s before
// the next poll, then gets tokens once the user approved; a denial ends
// it with access_denied.
func TestDevice(t *testing.T) {
	s := oidcserver.Start(t, oidcserver.Options{SlowDown: 1})
	c := config(s)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	var code oauthflow.DeviceCode
	tok, err := c.Device(ctx, func(d oauthflow.DeviceCode) {
		code = d
		if err := s.ApproveDevice(ctx, d.UserCode); err != nil {
			t.Errorf("approve: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("device flow: %v", err)
	}
	if code.Interval != time.Second || !strings.HasPrefix(code.VerificationURI, s.Issuer) {
		t.Errorf("device code: %+v", code)
	}
	if in, err := s.Introspect(ctx, tok.AccessToken); err != nil || !in.Active {
		t.Errorf("introspect: %+v %v", in, err)
	}
	polls := s.DevicePolls()
	if len(polls) < 2 {
		t.Fatalf("%d polls", len(polls))
	}
	// Lower bounds only: a loaded machine makes gaps longer, never shorter.
	if gap := polls[1].Sub(polls[0]); gap < 6*time.Second-100*time.Millisecond {
		t.Errorf("after slow_down the next poll came %s later, want at least interval+5s = 6s", gap)
	}

	_, err = c.Device(ctx, func(d oauthflow.DeviceCode) {
		if err := s.DenyDevice(ctx, d.UserCode); err != nil {
			t.Errorf("deny: %v", err)
		}
	})
	var oe *oauthflow.Error
	if !errors.As(err, &oe) || oe.Code != "access_denied" {
		t.Errorf("denied: %v, want access_denied", err)
	}
}

func TestCheckURL(t *testing.T) {
	for raw, ok := range map[string]bool{
		"https://oauth2.googleapis.com/token": true,
		"http://127.0.0.1:8080/token":         true,
		"http://localhost/token":              true,
		"http://[::1]:99/token":               true,
		"http://auth.example.com/token":       false,
		"ftp://auth.example.com/token":        false,
		"/token":                              false,
		"https://u:p@auth.example.com/token":  false,
	} {
		if err := oauthflow.CheckURL(raw); (err == nil) != ok {
			t.Errorf("CheckURL(%q) = %v", raw, err)
		}
	}
	if p, ok := oauthflow.Lookup("google"); !ok || p.NoDevice == "" || p.AuthParams.Get("access_type") != "offline" {
		t.Errorf("google: %+v", p)
	}
	if p, ok := oauthflow.Lookup("microsoft"); !ok || p.DeviceAuthURL == "" || p.Scopes[0] != "offline_access" {
		t.Errorf("microsoft: %+v", p)
	}
}
