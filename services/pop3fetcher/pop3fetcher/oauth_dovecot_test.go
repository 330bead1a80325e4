package pop3fetcher_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// TestDovecotOAuth: a POP3 account with OAuth 2.0 credentials (store on
// SQLite, NATS) against Dovecot's oauth2 passdb, which checks every token
// by introspection at the test's authorization server; access tokens live
// 4 seconds and refresh tokens rotate. Each of 6 passes runs after the
// tokens of the one before have expired and stores the message delivered
// since, logging in with OAUTHBEARER (Dovecot offers it and XOAUTH2). A
// revoked grant then parks the account with the re-authorization reason.
func TestDovecotOAuth(t *testing.T) {
	dovecottest.Require(t)
	const lifetime = 4 * time.Second
	const rounds = 6
	srv := oauthtest.New(oauthtest.WithSubject("bob"), oauthtest.WithLifetime(lifetime), oauthtest.WithRotation())
	t.Cleanup(srv.Close)
	d := dovecottest.Start(t, &dovecottest.Options{
		Users:  []dovecottest.User{{Name: "bob", Password: "dove-pw"}},
		OAuth2: &dovecottest.OAuth2{IntrospectionURL: srv.IntrospectionURL()},
	})
	e := startStore(t)
	host, port := hostPort(t, d.POP3Addr())
	acct := e.createAccount(t, account{host: host, port: port, security: mailbusv1.Security_SECURITY_STARTTLS, user: "bob", oauth: srv, mode: keep})
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.RootCAs = d.CertPool() })
	var last time.Time
	for round := range rounds {
		for !last.IsZero() && time.Since(last) < lifetime+500*time.Millisecond {
			time.Sleep(100 * time.Millisecond) // the tokens of the last pass expire
		}
		deliver(t, d, "bob", message(round+1))
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
	log, err := os.ReadFile(d.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "method=OAUTHBEARER"); n < rounds {
		t.Errorf("%d OAUTHBEARER logins in Dovecot's log, want %d", n, rounds)
	}

	// Revocation, as a user withdrawing the app's access does: the
	// refresh token and the access tokens end.
	srv.Revoke()
	srv.ExpireAccessTokens()
	_, err = f.Poll(callCtx(t), acct)
	var pe *pop3fetcher.PassError
	if !errors.As(err, &pe) || pe.Kind != pop3fetcher.KindReauth || !pe.Permanent {
		t.Fatalf("pass after revocation: %v, want a permanent re-authorization error", err)
	}
	st := e.getAccount(t, acct.Id).GetStatus()
	if st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), "re-authorization needed") {
		t.Fatalf("status after revocation: %v", st)
	}
	e.checkNoSecretLogged(t, srv.ClientSecret)
}
