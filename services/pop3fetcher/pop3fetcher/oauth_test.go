package pop3fetcher_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// TestOAuthLoginRetry: an OAuth 2.0 account whose access token the POP3
// server refuses (it ended the token before the expiry the store knows)
// asks the store for a new one (refresh) and logs in once more; what
// happens then depends on the server and the authorization server:
//
//   - renewed: the new token logs in, the pass succeeds;
//   - refused again: a credential failure, the account is parked (two
//     logins and two token requests, no more);
//   - grant revoked: the store answers REAUTHORIZATION_NEEDED and parks the
//     account; the pass is permanent, the store's reason stays, and a
//     later pass asks the store only (no login, no token request);
//   - token endpoint down: UNAVAILABLE, the pass is retried with backoff,
//     the account never parked, and the next pass logs in.
func TestOAuthLoginRetry(t *testing.T) {
	cases := []struct {
		name string
		// before runs after a first pass that succeeded with the store's
		// first token (nil: no first pass).
		before func(srv *oauthtest.Server)
		// refuseAll makes the POP3 server refuse every token.
		refuseAll bool
		wantKind  string // "" for success
		permanent bool
		state     mailbusv1.SyncState
		reason    string // in the status reason
		auths     int    // AUTH commands in the pass
		refreshes int    // token grants in the whole test
	}{
		{name: "renewed", before: func(srv *oauthtest.Server) { srv.ExpireAccessTokens() },
			state: mailbusv1.SyncState_SYNC_STATE_IDLE, auths: 2, refreshes: 2},
		{name: "refused again", refuseAll: true,
			wantKind: pop3fetcher.KindAuth, permanent: true, state: mailbusv1.SyncState_SYNC_STATE_PARKED, reason: "AUTH OAUTHBEARER", auths: 2, refreshes: 2},
		{name: "grant revoked", before: func(srv *oauthtest.Server) { srv.Revoke(); srv.ExpireAccessTokens() },
			wantKind: pop3fetcher.KindReauth, permanent: true, state: mailbusv1.SyncState_SYNC_STATE_PARKED, reason: "re-authorization needed", auths: 1, refreshes: 1},
		{name: "token endpoint down", before: func(srv *oauthtest.Server) { srv.ExpireAccessTokens(); srv.FailNext(1) },
			wantKind: pop3fetcher.KindStore, state: mailbusv1.SyncState_SYNC_STATE_RETRYING, reason: "token endpoint failed", auths: 1, refreshes: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := oauthtest.New(oauthtest.WithRotation())
			t.Cleanup(srv.Close)
			e := startStore(t)
			pop := pop3test.NewServer(t, pop3test.WithMailbox("bob", "unused-password", someMessages(1, 2)...),
				pop3test.WithSASL("PLAIN", "XOAUTH2", "OAUTHBEARER"),
				pop3test.WithTokenCheck(func(user, token string) bool { return !tc.refuseAll && srv.Valid(token) }))
			host, port := hostPort(t, pop.Addr())
			acct := e.createAccount(t, account{host: host, port: port, user: "bob", oauth: srv, mode: keep})
			f, reg := e.newFetcher(t)
			if tc.before != nil {
				if _, err := f.Poll(callCtx(t), acct); err != nil {
					t.Fatalf("first pass: %v", err)
				}
				tc.before(srv)
			}
			authsBefore := countPrefix(pop.Commands(), "AUTH ")
			_, err := f.Poll(callCtx(t), acct)
			var pe *pop3fetcher.PassError
			switch {
			case tc.wantKind == "" && err != nil:
				t.Fatalf("pass: %v", err)
			case tc.wantKind != "" && (!errors.As(err, &pe) || pe.Kind != tc.wantKind || pe.Permanent != tc.permanent):
				t.Fatalf("pass: %v (%#v), want kind %s, permanent %v", err, pe, tc.wantKind, tc.permanent)
			}
			if n := countPrefix(pop.Commands(), "AUTH ") - authsBefore; n != tc.auths {
				t.Errorf("%d logins in the pass, want %d: %q", n, tc.auths, pop.Commands())
			}
			if n := srv.Refreshes(); n != tc.refreshes {
				t.Errorf("%d token grants, want %d", n, tc.refreshes)
			}
			st := e.getAccount(t, acct.Id).GetStatus()
			if st.GetState() != tc.state || !strings.Contains(st.GetReason(), tc.reason) {
				t.Errorf("status %v %q, want %v with %q", st.GetState(), st.GetReason(), tc.state, tc.reason)
			}
			if tc.wantKind == "" && len(e.stored(t, acct.Id)) != 2 {
				t.Errorf("%d messages stored, want 2", len(e.stored(t, acct.Id)))
			}
			if tc.wantKind == pop3fetcher.KindReauth {
				if !strings.Contains(st.GetReason(), "--refresh-token-file") {
					t.Errorf("the store's reason was replaced: %q", st.GetReason())
				}
				if got := metric(t, reg, "mailbus_pop3_errors_total", "kind", pop3fetcher.KindReauth); got != 1 {
					t.Errorf("errors_total{kind=reauth} = %v", got)
				}
				// Asked again, the store answers at once: no login, no
				// token request.
				auths, hits := countPrefix(pop.Commands(), "AUTH "), srv.Hits()
				if _, err := f.Poll(callCtx(t), acct); !errors.As(err, &pe) || pe.Kind != pop3fetcher.KindReauth {
					t.Fatalf("pass after re-authorization was needed: %v", err)
				}
				if countPrefix(pop.Commands(), "AUTH ") != auths || srv.Hits() != hits {
					t.Errorf("a pass of a parked account logged in or asked the token endpoint")
				}
			}
			if tc.wantKind == pop3fetcher.KindStore {
				// The endpoint works again: the next pass renews and logs in.
				if _, err := f.Poll(callCtx(t), acct); err != nil {
					t.Fatalf("pass once the token endpoint works: %v", err)
				}
				if st := e.getAccount(t, acct.Id).GetStatus(); st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE {
					t.Errorf("status after recovery: %v", st)
				}
			}
			e.checkNoSecretLogged(t, srv.ClientSecret)
		})
	}
}

func countPrefix(cmds []string, prefix string) int {
	n := 0
	for _, c := range cmds {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// TestOAuthReauthorizationStops: a running fetcher whose account the store
// answers REAUTHORIZATION_NEEDED for asks no more: while a second account
// is polled and its mail stored (many backoff periods of a worker that
// kept retrying), the first account's GetAccountSecret calls stay at one,
// and its status keeps the store's reason.
func TestOAuthReauthorizationStops(t *testing.T) {
	srv := oauthtest.New()
	t.Cleanup(srv.Close)
	e := startStore(t)
	pop := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", someMessages(1, 1)...), pop3test.WithMailbox("carol", "pw", someMessages(2, 1)...),
		pop3test.WithSASL("PLAIN", "OAUTHBEARER"), pop3test.WithTokenCheck(func(_, token string) bool { return srv.Valid(token) }))
	host, port := hostPort(t, pop.Addr())
	revoked := e.createAccount(t, account{name: "revoked", host: host, port: port, user: "bob", oauth: srv, mode: keep})
	srv.Revoke()
	var mu sync.Mutex
	calls := map[string]int{}
	count := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if r, ok := req.(*mailbusv1.GetAccountSecretRequest); ok {
			mu.Lock()
			calls[r.AccountId]++
			mu.Unlock()
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	conn := e.dial(t, e.serviceToken, grpc.WithUnaryInterceptor(count))
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.Conn = conn })
	runFetcher(t, f)
	e.waitStatus(t, revoked.Id, mailbusv1.SyncState_SYNC_STATE_PARKED)
	other := e.createAccount(t, account{name: "other", host: host, port: port, user: "carol", secret: "pw", mode: keep})
	waitFor(t, "the other account's mail", func() bool { return len(e.stored(t, other.Id)) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if n := calls[revoked.Id]; n != 1 {
		t.Errorf("%d GetAccountSecret calls for the account that needs re-authorization, want 1", n)
	}
	if st := e.getAccount(t, revoked.Id).GetStatus(); !strings.Contains(st.GetReason(), "re-authorization needed") {
		t.Errorf("status %v", st)
	}
	if n := countPrefix(pop.Commands(), "AUTH OAUTHBEARER"); n != 0 {
		t.Errorf("%d logins of the account that needs re-authorization", n)
	}
}
