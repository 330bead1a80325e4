package pop3_test

import (
	"context"
	"errors"
	"net/url"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	"github.com/mailbus/mailbus/pkg/oauthflow"
	"github.com/mailbus/mailbus/pkg/oauthtest/oidcserver"
	"github.com/mailbus/mailbus/pkg/pop3"
)

// TestDovecotOIDCServer: Dovecot's oauth2 passdb introspecting at a real
// authorization server (zitadel/oidc's op, pkg/oauthtest/oidcserver, with
// the mail server's own client credentials): a refresh token from the
// device flow, access tokens from it as the store gets them, POP3 logins
// with OAUTHBEARER and XOAUTH2; a token that expired, one of a rotated-out
// grant after revocation, are refused as authentication failures.
func TestDovecotOIDCServer(t *testing.T) {
	dovecottest.Require(t)
	const lifetime = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s := oidcserver.Start(t, oidcserver.Options{AccessTokenLifetime: lifetime})
	introspection, err := url.Parse(s.IntrospectionURL)
	if err != nil {
		t.Fatal(err)
	}
	introspection.User = url.UserPassword(s.ResourceID, s.ResourceSecret)
	user := s.User.Email // introspection's username
	d := dovecottest.Start(t, &dovecottest.Options{
		Users:  []dovecottest.User{{Name: user, Password: "pw"}},
		OAuth2: &dovecottest.OAuth2{IntrospectionURL: introspection.String()},
		// The logins follow one another, each after the last one's close,
		// but Dovecot counts a session until its pop3 process has exited:
		// with the default of one, a login could get [IN-USE] (seen in CI).
		POP3Sessions: 4,
	})
	if err := d.Deliver(user, "INBOX", []byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	c := &oauthflow.Config{Endpoints: oauthflow.Endpoints{AuthURL: s.AuthURL, TokenURL: s.TokenURL, DeviceAuthURL: s.DeviceAuthURL},
		ClientID: s.ClientID, ClientSecret: s.ClientSecret, Scopes: []string{"offline_access", "mail"}}
	tok, err := c.Device(ctx, func(dc oauthflow.DeviceCode) {
		if err := s.ApproveDevice(ctx, dc.UserCode); err != nil {
			t.Errorf("approve: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("device flow: %v", err)
	}
	login := func(token string, mech pop3.Mechanism) error {
		t.Helper()
		cl, err := pop3.Dial(ctx, d.POP3Addr(), &pop3.Options{Security: pop3.SecuritySTARTTLS, TLSConfig: d.TLSConfig(), Timeout: 30 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		if err := cl.Login(ctx, pop3.Credentials{Username: user, Token: token}, mech); err != nil {
			return err
		}
		if n, _, err := cl.Stat(ctx); err != nil || n != 1 {
			t.Fatalf("STAT: %d %v", n, err)
		}
		return nil
	}
	for _, mech := range []pop3.Mechanism{pop3.MechanismAuto, pop3.MechanismXOAUTH2} {
		if err := login(tok.AccessToken, mech); err != nil {
			t.Fatalf("%s login with the device flow's token: %v", mech, err)
		}
	}
	// Once it has expired, the token is refused; a renewed one (the
	// refresh token rotates) logs in.
	expired := tok.AccessToken
	for time.Now().Before(tok.Expiry.Add(time.Second)) {
		time.Sleep(100 * time.Millisecond)
	}
	if err := login(expired, pop3.MechanismAuto); !errors.Is(err, pop3.ErrAuthFailed) {
		t.Fatalf("login with an expired token: %v, want an authentication failure", err)
	}
	next, err := c.Refresh(ctx, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if err := login(next.AccessToken, pop3.MechanismAuto); err != nil {
		t.Fatalf("login with the renewed token: %v", err)
	}
	// Revoked: the access token is refused at once, the refresh token too.
	s.RevokeAll()
	if err := login(next.AccessToken, pop3.MechanismOAuthBearer); !errors.Is(err, pop3.ErrAuthFailed) {
		t.Fatalf("login with a revoked token: %v, want an authentication failure", err)
	}
	var oe *oauthflow.Error
	if _, err := c.Refresh(ctx, next.RefreshToken); !errors.As(err, &oe) || oe.Code != "invalid_grant" {
		t.Fatalf("refresh after revocation: %v, want invalid_grant", err)
	}
}
