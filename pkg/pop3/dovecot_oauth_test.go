package pop3_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/pkg/pop3"
)

// accessToken gets an access token of srv with the refresh_token grant,
// as the store would.
func accessToken(t *testing.T, srv *oauthtest.Server) string {
	t.Helper()
	resp, err := http.PostForm(srv.URL, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {srv.Grant()},
		"client_id": {srv.ClientID}, "client_secret": {srv.ClientSecret}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil || ans.AccessToken == "" {
		t.Fatalf("token answer: %v", err)
	}
	return ans.AccessToken
}

// TestDovecotOAuth: POP3 logins with XOAUTH2 and OAUTHBEARER against
// Dovecot's oauth2 passdb, which checks every token by introspection at a
// local authorization server: a right token logs in; a wrong one, an
// ended one, or another user's are refused as a permanent authentication
// failure after the mechanism's error exchange, and the session can log
// in again.
func TestDovecotOAuth(t *testing.T) {
	dovecottest.Require(t)
	srv := oauthtest.New(oauthtest.WithSubject("alice"))
	t.Cleanup(srv.Close)
	d := dovecottest.Start(t, &dovecottest.Options{
		Users:  []dovecottest.User{{Name: "alice", Password: "pw"}, {Name: "bob", Password: "pw"}},
		OAuth2: &dovecottest.OAuth2{IntrospectionURL: srv.IntrospectionURL()},
	})
	if err := d.Deliver("alice", "INBOX", []byte("Subject: hi\r\n\r\nhello\r\n")); err != nil {
		t.Fatal(err)
	}
	good := accessToken(t, srv)
	ended := accessToken(t, srv)
	srv.ExpireAccessTokens()
	good = accessToken(t, srv)
	for _, mech := range []pop3.Mechanism{pop3.MechanismXOAUTH2, pop3.MechanismOAuthBearer} {
		for _, tt := range []struct {
			name, user, token string
			ok                bool
		}{
			{"right token", "alice", good, true},
			{"wrong token", "alice", "access-not-issued", false},
			{"ended token", "alice", ended, false},
			{"another user's token", "bob", good, false},
		} {
			t.Run(string(mech)+"/"+tt.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				c, err := pop3.Dial(ctx, d.POP3Addr(), &pop3.Options{Security: pop3.SecuritySTARTTLS, TLSConfig: d.TLSConfig(), Timeout: 30 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				caps, err := c.Capabilities(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if !caps.HasSASL("XOAUTH2") || !caps.HasSASL("OAUTHBEARER") || pop3.TokenMechanism(caps) != pop3.MechanismOAuthBearer {
					t.Fatalf("CAPA SASL %v: want XOAUTH2 and OAUTHBEARER offered, OAUTHBEARER chosen", caps.SASL())
				}
				hits := srv.Introspections()
				err = c.Login(ctx, pop3.Credentials{Username: tt.user, Token: tt.token}, mech)
				if srv.Introspections() == hits {
					t.Error("Dovecot did not introspect the token")
				}
				if tt.ok {
					if err != nil {
						t.Fatalf("Login: %v", err)
					}
					if n, _, err := c.Stat(ctx); err != nil || n != 1 {
						t.Fatalf("STAT: %d %v", n, err)
					}
					return
				}
				if !errors.Is(err, pop3.ErrAuthFailed) || pop3.Temporary(err) {
					t.Fatalf("Login = %v, want a permanent authentication failure", err)
				}
				if strings.Contains(err.Error(), tt.token) {
					t.Fatalf("token in error %q", err)
				}
				if tt.user == "alice" {
					if err := c.Login(ctx, pop3.Credentials{Username: "alice", Token: good}, mech); err != nil {
						t.Fatalf("Login with the right token after a refusal: %v", err)
					}
				}
			})
		}
	}
}
