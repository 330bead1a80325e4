package imapsync_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthflow"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/pkg/oauthtest/oidcserver"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// startOAuthDovecot starts Dovecot with its oauth2 passdb, which checks
// every XOAUTH2 and OAUTHBEARER login by introspection at srv (whose
// grants are alice's); alice's password still logs in (the test's own
// client).
func startOAuthDovecot(t testing.TB, srv *oauthtest.Server) *dovecottest.Server {
	t.Helper()
	return dovecottest.Start(t, &dovecottest.Options{
		Users:  []dovecottest.User{{Name: "alice", Password: "secret"}, {Name: "bob", Password: "secret"}},
		OAuth2: &dovecottest.OAuth2{IntrospectionURL: srv.IntrospectionURL()},
	})
}

// TestDovecotOAuthMechanisms: IMAP AUTHENTICATE with XOAUTH2 and
// OAUTHBEARER (imapconn's SASL clients) against Dovecot's oauth2 passdb:
// Dovecot offers both, imapsync chooses OAUTHBEARER; a right token logs
// in; a wrong token, an ended one, or another user's are refused: with
// OAUTHBEARER, NO [AUTHENTICATIONFAILED] after the error challenge and
// %x01 (the connection stays usable); with XOAUTH2 the error challenge
// itself (imapsync then drops the connection: Dovecot answers go-imap's
// "=" with BAD).
func TestDovecotOAuthMechanisms(t *testing.T) {
	dovecottest.Require(t)
	srv := oauthtest.New(oauthtest.WithSubject("alice"))
	t.Cleanup(srv.Close)
	s := startOAuthDovecot(t, srv)
	ended := accessToken(t, srv)
	srv.ExpireAccessTokens()
	good := accessToken(t, srv)
	clients := map[string]func(user, token string) sasl.Client{
		"XOAUTH2":     imapconn.NewXOAuth2Client,
		"OAUTHBEARER": imapconn.NewOAuthBearerClient,
	}
	for mech, client := range clients {
		for _, tt := range []struct {
			name, user, token string
			ok                bool
		}{
			{"right token", "alice", good, true},
			{"wrong token", "alice", "access-not-issued", false},
			{"ended token", "alice", ended, false},
			{"another user's token", "bob", good, false},
		} {
			t.Run(mech+"/"+tt.name, func(t *testing.T) {
				c, err := imapclient.DialTLS(s.IMAPSAddr(), &imapclient.Options{TLSConfig: s.TLSConfig()})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				caps := c.Caps()
				if !caps.Has(imap.AuthCap("XOAUTH2")) || !caps.Has(imap.AuthCap(sasl.OAuthBearer)) || imapconn.TokenMechanism(caps) != sasl.OAuthBearer {
					t.Fatalf("capabilities %v: want AUTH=XOAUTH2 and AUTH=OAUTHBEARER, OAUTHBEARER chosen", caps)
				}
				hits := srv.Introspections()
				err = c.Authenticate(client(tt.user, tt.token))
				if srv.Introspections() == hits {
					t.Error("Dovecot did not introspect the token")
				}
				if tt.ok {
					if err != nil {
						t.Fatalf("AUTHENTICATE %s: %v", mech, err)
					}
					if _, err := c.Select("INBOX", nil).Wait(); err != nil {
						t.Fatalf("SELECT after login: %v", err)
					}
					return
				}
				if mech == "XOAUTH2" {
					// The error challenge is the verdict; the connection
					// is dropped (see imapconn's xoauth2).
					var refused *imapconn.TokenRefusedError
					if !errors.As(err, &refused) || !strings.Contains(refused.Status, "status") {
						t.Fatalf("AUTHENTICATE %s = %v, want the server's error challenge", mech, err)
					}
					return
				}
				var ie *imap.Error
				if !errors.As(err, &ie) || ie.Type != imap.StatusResponseTypeNo || ie.Code != imap.ResponseCodeAuthenticationFailed {
					t.Fatalf("AUTHENTICATE %s = %v, want NO [AUTHENTICATIONFAILED]", mech, err)
				}
				if err := c.Authenticate(client("alice", good)); err != nil {
					t.Fatalf("AUTHENTICATE with the right token after a refusal: %v", err)
				}
			})
		}
	}
}

// TestDovecotOAuthExpiries: an OAuth 2.0 account (store on SQLite, NATS,
// imapsync) against Dovecot's oauth2 passdb, which checks every token by
// introspection at a real authorization server (zitadel/oidc's op,
// pkg/oauthtest/oidcserver, with the mail server's own client
// credentials). The refresh token comes from its device flow; access
// tokens live 4 seconds and refresh tokens rotate. In each of 6 rounds the
// tokens of the round before have expired, a message arrives upstream, a
// device flags a message, and every upstream connection is cut, so that
// imapsync logs in again with a token the store renewed at the server:
// every change arrives on the other side, the account is never parked,
// and the logins are OAUTHBEARER. Then the grant is revoked: the store's
// renewal gets invalid_grant and the account is parked with the
// re-authorization reason.
func TestDovecotOAuthExpiries(t *testing.T) {
	dovecottest.Require(t)
	const lifetime = 4 * time.Second
	const rounds = 6
	srv := oidcserver.Start(t, oidcserver.Options{AccessTokenLifetime: lifetime})
	user := srv.User.Email // the introspection's username
	s := dovecottest.Start(t, &dovecottest.Options{
		Users:  []dovecottest.User{{Name: user, Password: "secret"}},
		OAuth2: &dovecottest.OAuth2{IntrospectionURL: oidcIntrospectionURL(t, srv)},
	})
	e := startStore(t)
	for i := range 2 {
		if err := s.Deliver(user, "INBOX", testMessage(i, "INBOX")); err != nil {
			t.Fatal(err)
		}
	}
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, user, "", func(a *mailbusv1.Account) {
		a.Secret, a.AuthMethod = "", mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2
		a.Oauth2 = &mailbusv1.Oauth2Credentials{Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC, TokenUrl: srv.TokenURL,
			ClientId: srv.ClientID, ClientSecret: srv.ClientSecret, RefreshToken: oidcGrant(t, srv)}
	})
	js := e.consume(t, a.Id)
	sy := startSync(t, e, withRoots(s))
	tp, err := imapclient.DialTLS(s.IMAPSAddr(), &imapclient.Options{TLSConfig: s.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tp.Close() })
	if err := tp.Login(user, "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	inSync := func(what string) {
		t.Helper()
		var last error
		waitFor(t, what, func() bool {
			last = sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX"))
			return last == nil
		})
	}
	inSync("initial sync")
	flagged := map[string]bool{} // store ids flagged by the device
	synced, grants := time.Now(), srv.Refreshes()
	for round := range rounds {
		// Every token issued before the last round was in sync has
		// expired before this round's cut: wait out the lifetime (a
		// wait, not an assertion).
		for time.Since(synced) < lifetime+500*time.Millisecond {
			time.Sleep(100 * time.Millisecond)
		}
		if err := s.Deliver(user, "INBOX", testMessage(100+round, "INBOX")); err != nil {
			t.Fatal(err)
		}
		// The device flags the oldest message it has not flagged yet.
		var id string
		waitFor(t, fmt.Sprintf("round %d: a message to flag", round), func() bool {
			lowest := uint32(0)
			for uid, m := range e.storeFolder(t, a.Id, "INBOX") {
				if !flagged[m.id] && (lowest == 0 || uid < lowest) {
					lowest, id = uid, m.id
				}
			}
			return id != ""
		})
		flagged[id] = true
		if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
			t.Fatal(err)
		}
		sy.cuts.cutAll()
		inSync(fmt.Sprintf("round %d: both changes", round))
		for fid := range flagged {
			in := e.storeFolder(t, a.Id, "INBOX")
			srvView := serverFolder(t, tp, "INBOX")
			if !strings.Contains(strings.Join(srvView[uidOfID(in, fid)].flags, " "), `\Flagged`) {
				t.Fatalf("round %d: the device's flag on %s is not on the server", round, fid)
			}
		}
		synced = time.Now()
		if n := srv.Refreshes(); n == grants {
			t.Errorf("round %d: logged in again without a renewed token", round)
		}
		grants = srv.Refreshes()
	}
	if n := srv.Refreshes(); n < rounds {
		t.Errorf("%d token grants over %d rounds of a %v lifetime", n, rounds, lifetime)
	}
	parked := func(ev *mailbusv1.Event) bool {
		return ev.GetAccountStatus().GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
	}
	if n := js.count(parked); n != 0 || e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Fatalf("the account was parked (%d events): %v", n, e.account(t, a.Id).GetStatus())
	}
	methods, err := s.LoginMethods()
	if err != nil {
		t.Fatal(err)
	}
	if n := methods["OAUTHBEARER"]; n < rounds {
		t.Errorf("%d OAUTHBEARER logins in Dovecot's log, want at least %d", n, rounds)
	}
	if methods["XOAUTH2"] > 0 {
		t.Error("XOAUTH2 used although Dovecot offers OAUTHBEARER")
	}

	// Revocation, as a user withdrawing the app's access does: the
	// refresh token and the access tokens end. The next login is refused,
	// the renewal it asks for gets invalid_grant.
	srv.RevokeAll()
	sy.cuts.cutAll()
	waitFor(t, "parked for re-authorization", func() bool {
		st := e.account(t, a.Id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
	})
	st := e.account(t, a.Id).GetStatus()
	if !strings.Contains(st.GetReason(), "re-authorization needed") || !strings.Contains(st.GetReason(), "--refresh-token-file") {
		t.Errorf("parked with %q, want the re-authorization reason", st.GetReason())
	}
	waitFor(t, "the account.status event", func() bool { return js.count(parked) == 1 })
}

func uidOfID(folder map[uint32]storeMessage, id string) uint32 {
	for uid, m := range folder {
		if m.id == id {
			return uid
		}
	}
	return 0
}

// oidcIntrospectionURL is srv's introspection endpoint with the mail
// server's client credentials, as Dovecot's oauth2 passdb is given it.
func oidcIntrospectionURL(t testing.TB, srv *oidcserver.Server) string {
	t.Helper()
	u, err := url.Parse(srv.IntrospectionURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(srv.ResourceID, srv.ResourceSecret)
	return u.String()
}

// oidcGrant gets a refresh token of srv by the device flow, the user
// approving on the verification page, as `mailbus account add
// --oauth-device` does.
func oidcGrant(t testing.TB, srv *oidcserver.Server) string {
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
