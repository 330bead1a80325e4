package pop3fetcher_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthflow"
	"github.com/mailbus/mailbus/pkg/oauthtest/oidcserver"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// TestDovecotOAuth: a POP3 account with OAuth 2.0 credentials (store on
// SQLite, NATS) against Dovecot's oauth2 passdb, which checks every token
// by introspection at a real authorization server (zitadel/oidc's op,
// pkg/oauthtest/oidcserver, with the mail server's own client
// credentials). The refresh token comes from its device flow; the store
// renews access tokens there; they live 4 seconds and refresh tokens
// rotate. Each of 6 passes runs after the
// tokens of the one before have expired and stores the message delivered
// since, logging in with OAUTHBEARER (Dovecot offers it and XOAUTH2). A
// revoked grant then parks the account with the re-authorization reason.
func TestDovecotOAuth(t *testing.T) {
	dovecottest.Require(t)
	const lifetime = 4 * time.Second
	const rounds = 6
	srv := oidcserver.Start(t, oidcserver.Options{AccessTokenLifetime: lifetime})
	user := srv.User.Email // the introspection's username
	introspection, err := url.Parse(srv.IntrospectionURL)
	if err != nil {
		t.Fatal(err)
	}
	introspection.User = url.UserPassword(srv.ResourceID, srv.ResourceSecret)
	d := dovecottest.Start(t, &dovecottest.Options{
		Users:  []dovecottest.User{{Name: user, Password: "dove-pw"}},
		OAuth2: &dovecottest.OAuth2{IntrospectionURL: introspection.String()},
	})
	e := startStore(t)
	host, port := hostPort(t, d.POP3Addr())
	creds := &mailbusv1.Oauth2Credentials{Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC, TokenUrl: srv.TokenURL,
		ClientId: srv.ClientID, ClientSecret: srv.ClientSecret, RefreshToken: deviceGrant(t, srv)}
	acct := e.createAccount(t, account{host: host, port: port, security: mailbusv1.Security_SECURITY_STARTTLS, user: user, oauth2: creds, mode: keep})
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.RootCAs = d.CertPool() })
	var last time.Time
	for round := range rounds {
		for !last.IsZero() && time.Since(last) < lifetime+500*time.Millisecond {
			time.Sleep(100 * time.Millisecond) // the tokens of the last pass expire
		}
		deliver(t, d, user, message(round+1))
		grants := srv.Refreshes()
		res := poll(t, f, acct)
		last = time.Now()
		if res.New != 1 || res.Fetched != 1 {
			t.Fatalf("pass %d: %+v, want the new message", round, res)
		}
		if srv.Refreshes() == grants {
			t.Fatalf("pass %d: logged in without a renewed token", round)
		}
	}
	if n := len(e.stored(t, acct.Id)); n != rounds {
		t.Fatalf("%d messages stored, want %d", n, rounds)
	}
	methods, err := d.LoginMethods()
	if err != nil {
		t.Fatal(err)
	}
	if n := methods["OAUTHBEARER"]; n < rounds {
		t.Errorf("%d OAUTHBEARER logins in Dovecot's log, want %d", n, rounds)
	}
	if methods["XOAUTH2"] > 0 {
		t.Error("XOAUTH2 used although Dovecot offers OAUTHBEARER")
	}

	// Revocation, as a user withdrawing the app's access does: the
	// refresh token and the access tokens end.
	srv.RevokeAll()
	_, err = f.Poll(callCtx(t), acct)
	var pe *pop3fetcher.PassError
	if !errors.As(err, &pe) || pe.Kind != pop3fetcher.KindReauth || !pe.Permanent {
		t.Fatalf("pass after revocation: %v, want a permanent re-authorization error", err)
	}
	st := e.getAccount(t, acct.Id).GetStatus()
	if st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), "re-authorization needed") {
		t.Fatalf("status after revocation: %v", st)
	}
	e.checkNoSecretLogged(t, srv.ClientSecret, srv.ResourceSecret, creds.RefreshToken)
}

// deviceGrant gets a refresh token of srv by the device flow, the user
// approving on the verification page, as `mailbus account add
// --oauth-device` does.
func deviceGrant(t testing.TB, srv *oidcserver.Server) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := &oauthflow.Config{Endpoints: oauthflow.Endpoints{AuthURL: srv.AuthURL, TokenURL: srv.TokenURL, DeviceAuthURL: srv.DeviceAuthURL},
		ClientID: srv.ClientID, ClientSecret: srv.ClientSecret, Scopes: []string{"offline_access", "mail"}}
	tok, err := c.Device(ctx, func(dc oauthflow.DeviceCode) {
		if err := srv.ApproveDevice(ctx, dc.UserCode); err != nil {
			t.Errorf("approve the device code: %v", err)
		}
	})
	if err != nil || tok.RefreshToken == "" {
		t.Fatalf("device flow: %v (refresh token %t)", err, tok.RefreshToken != "")
	}
	return tok.RefreshToken
}
