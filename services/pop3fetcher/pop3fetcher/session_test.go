package pop3fetcher_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// TestSessionSetup covers transport security and authentication against
// the fake server: what works, and what parks the account (a permanent
// error: the reason says why, and the pass error is permanent).
func TestSessionSetup(t *testing.T) {
	const tok = "ya29.token-xyz"
	cases := []struct {
		name       string
		server     []pop3test.Option
		security   mailbusv1.Security
		auth       mailbusv1.AuthMethod
		secret     string
		skipVerify bool
		trust      bool
		// wantKind "" means the pass succeeds.
		wantKind string
		// wantCmd is a command the session must have sent; noCmd one it
		// must not have.
		wantCmd, noCmd string
	}{
		{name: "implicit TLS", server: []pop3test.Option{pop3test.WithImplicitTLS()}, security: mailbusv1.Security_SECURITY_TLS, trust: true},
		{name: "implicit TLS, untrusted certificate", server: []pop3test.Option{pop3test.WithImplicitTLS()}, security: mailbusv1.Security_SECURITY_TLS, wantKind: pop3fetcher.KindTLS, noCmd: "USER"},
		{name: "implicit TLS, untrusted but verification off", server: []pop3test.Option{pop3test.WithImplicitTLS()}, security: mailbusv1.Security_SECURITY_TLS, skipVerify: true},
		{name: "implicit TLS to a plaintext server", security: mailbusv1.Security_SECURITY_TLS, trust: true, wantKind: pop3fetcher.KindTLS},
		{name: "STLS", server: []pop3test.Option{pop3test.WithSTLS()}, security: mailbusv1.Security_SECURITY_STARTTLS, trust: true, wantCmd: "STLS"},
		{name: "STLS not offered", security: mailbusv1.Security_SECURITY_STARTTLS, trust: true, wantKind: pop3fetcher.KindTLS, noCmd: "USER"},
		{name: "SASL PLAIN when offered", server: []pop3test.Option{pop3test.WithSASL("PLAIN")}, wantCmd: "AUTH PLAIN", noCmd: "USER"},
		{name: "USER/PASS otherwise", wantCmd: "USER", noCmd: "AUTH"},
		{name: "SASL PLAIN refused", server: []pop3test.Option{pop3test.WithSASL("PLAIN")}, secret: "bad", wantKind: pop3fetcher.KindAuth, noCmd: "USER"},
		{name: "XOAUTH2", server: []pop3test.Option{pop3test.WithSASL("XOAUTH2"), pop3test.WithXOAUTH2Token("bob", tok)}, auth: mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, secret: tok, wantCmd: "AUTH XOAUTH2"},
		{name: "XOAUTH2 token refused", server: []pop3test.Option{pop3test.WithSASL("XOAUTH2"), pop3test.WithXOAUTH2Token("bob", tok)}, auth: mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, secret: "expired", wantKind: pop3fetcher.KindAuth},
		{name: "OAUTHBEARER", server: []pop3test.Option{pop3test.WithSASL("OAUTHBEARER"), pop3test.WithXOAUTH2Token("bob", tok)}, auth: mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, secret: tok, wantCmd: "AUTH OAUTHBEARER"},
		{name: "OAUTHBEARER preferred", server: []pop3test.Option{pop3test.WithSASL("PLAIN", "XOAUTH2", "OAUTHBEARER"), pop3test.WithXOAUTH2Token("bob", tok)}, auth: mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, secret: tok, wantCmd: "AUTH OAUTHBEARER", noCmd: "AUTH XOAUTH2"},
		{name: "OAUTHBEARER token refused", server: []pop3test.Option{pop3test.WithSASL("OAUTHBEARER"), pop3test.WithXOAUTH2Token("bob", tok)}, auth: mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, secret: "expired", wantKind: pop3fetcher.KindAuth, wantCmd: "AQ=="},
		{name: "XOAUTH2 not offered", server: []pop3test.Option{pop3test.WithSASL("PLAIN")}, auth: mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, secret: tok, wantKind: pop3fetcher.KindAuth, noCmd: "AUTH"},
		{name: "SYS/PERM at login", server: []pop3test.Option{pop3test.WithFault(pop3test.Reply("PASS", "-ERR [SYS/PERM] account disabled"))}, wantKind: pop3fetcher.KindServer},
		{name: "APOP when USER is not offered", server: []pop3test.Option{pop3test.WithAPOP(), pop3test.WithoutUSER()}, wantCmd: "APOP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStore(t)
			msgs := someMessages(1, 2)
			srv := pop3test.NewServer(t, append([]pop3test.Option{pop3test.WithMailbox("bob", "pw-s3cr3t", msgs...)}, tc.server...)...)
			host, port := hostPort(t, srv.Addr())
			if tc.security == mailbusv1.Security_SECURITY_UNSPECIFIED {
				tc.security = mailbusv1.Security_SECURITY_NONE
			}
			if tc.secret == "" {
				tc.secret = "pw-s3cr3t"
			}
			acct := e.createAccount(t, account{host: host, port: port, security: tc.security, skipVerify: tc.skipVerify,
				user: "bob", secret: tc.secret, auth: tc.auth, mode: keep})
			f, reg := e.newFetcher(t, func(c *pop3fetcher.Config) {
				if tc.trust {
					c.RootCAs = srv.ClientTLSConfig().RootCAs
				}
			})
			res, err := f.Poll(callCtx(t), acct)
			st := e.getAccount(t, acct.Id).GetStatus()
			if tc.wantKind == "" {
				if err != nil {
					t.Fatalf("pass failed: %v", err)
				}
				if res.Fetched != 2 || st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE {
					t.Errorf("pass: %+v, status %v", res, st)
				}
			} else {
				var pe *pop3fetcher.PassError
				if !errors.As(err, &pe) || pe.Kind != tc.wantKind || !pe.Permanent {
					t.Fatalf("pass: got %v (%#v), want a permanent %s error", err, pe, tc.wantKind)
				}
				if st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), "parked") {
					t.Errorf("status: %v", st)
				}
				if got := metric(t, reg, "mailbus_pop3_errors_total", "kind", tc.wantKind); got != 1 {
					t.Errorf("errors_total{kind=%s} = %v", tc.wantKind, got)
				}
				if n := len(e.stored(t, acct.Id)); n != 0 {
					t.Errorf("%d messages stored", n)
				}
			}
			if tc.wantCmd != "" && !hasCommand(srv, tc.wantCmd) {
				t.Errorf("no %s command in %q", tc.wantCmd, srv.Commands())
			}
			if tc.noCmd != "" && hasCommand(srv, tc.noCmd) {
				t.Errorf("a %s command was sent: %q", tc.noCmd, srv.Commands())
			}
			e.checkNoSecretLogged(t, tc.secret, tok)
		})
	}
}

func hasCommand(srv *pop3test.Server, prefix string) bool {
	for _, c := range srv.Commands() {
		if strings.HasPrefix(strings.ToUpper(c), prefix) {
			return true
		}
	}
	return false
}

// TestInsecureSkipVerifyWarns: the worker of an account that skips
// certificate verification logs a warning, and works.
func TestInsecureSkipVerifyWarns(t *testing.T) {
	e := startStore(t)
	srv := pop3test.NewServer(t, pop3test.WithImplicitTLS(), pop3test.WithMailbox("bob", "pw", someMessages(1, 1)...))
	host, port := hostPort(t, srv.Addr())
	acct := e.createAccount(t, account{host: host, port: port, security: mailbusv1.Security_SECURITY_TLS, skipVerify: true, user: "bob", secret: "pw"})
	f, _ := e.newFetcher(t)
	runFetcher(t, f)
	waitFor(t, "the message", func() bool { return len(e.stored(t, acct.Id)) == 1 })
	if logs := e.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "insecure_skip_verify") {
		t.Error("no warning about the skipped certificate verification")
	}
}

// TestLoginDelay: the server's LOGIN-DELAY is noted (the worker never
// polls sooner).
func TestLoginDelay(t *testing.T) {
	e := startStore(t)
	srv := pop3test.NewServer(t, pop3test.WithLoginDelay(900), pop3test.WithMailbox("bob", "pw", someMessages(1, 1)...))
	acct := e.fakeAccount(t, srv, "bob", "pw", keep)
	f, _ := e.newFetcher(t)
	poll(t, f, acct)
	if d := pop3fetcher.LoginDelay(f, acct); d != 900*time.Second {
		t.Errorf("login delay %v, want 15m", d)
	}
}

// TestChangedAccountNoLogin: a pass with an account the store has since
// updated (a newer generation) ends before it connects: the new secret
// never goes to the host of the old configuration, nothing is reported,
// and a pass with the updated account works.
func TestChangedAccountNoLogin(t *testing.T) {
	e := startStore(t)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw-new", someMessages(1, 2)...))
	old := e.fakeAccount(t, srv, "bob", "pw-old", keep)
	updated := e.updateSecret(t, old.Id, "pw-new")
	if updated.Generation == old.Generation {
		t.Fatal("the update did not change the generation")
	}
	f, reg := e.newFetcher(t)
	_, err := f.Poll(callCtx(t), old)
	var pe *pop3fetcher.PassError
	if !errors.As(err, &pe) || pe.Permanent {
		t.Fatalf("pass with the old account: %v, want a temporary PassError", err)
	}
	if n := srv.TotalSessions(); n != 0 {
		t.Errorf("the pass with the old account opened %d POP3 sessions", n)
	}
	if st := e.getAccount(t, old.Id).GetStatus().GetState(); st == mailbusv1.SyncState_SYNC_STATE_RETRYING || st == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Errorf("the stale pass reported %v", st)
	}
	if got := metric(t, reg, "mailbus_pop3_errors_total", "kind", pop3fetcher.KindConfig); got != 0 {
		t.Errorf("errors{kind=config} = %v, want 0", got)
	}
	if res := poll(t, f, updated); res.Fetched != 2 {
		t.Errorf("pass with the updated account: %+v", res)
	}
}
