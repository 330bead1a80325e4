package imapsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// oauthAccount makes a an account with OAuth 2.0 credentials of srv (a
// new grant) instead of a password.
func oauthAccount(srv *oauthtest.Server) func(a *mailbusv1.Account) {
	return func(a *mailbusv1.Account) {
		a.Secret, a.AuthMethod = "", mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2
		a.Oauth2 = &mailbusv1.Oauth2Credentials{Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC, TokenUrl: srv.URL,
			ClientId: srv.ClientID, ClientSecret: srv.ClientSecret, RefreshToken: srv.Grant()}
	}
}

// accessToken gets an access token of srv with the refresh_token grant of
// a new grant, as the store would.
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

// tokenLog is an IMAP server's view of the bearer tokens it was shown.
type tokenLog struct {
	mu     sync.Mutex
	tokens []string
}

func (l *tokenLog) add(tok string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.tokens = append(l.tokens, tok)
	return len(l.tokens)
}

func (l *tokenLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.tokens)
}

// TestMemOAuthLoginRetry: an OAuth 2.0 account whose access token the
// server refuses asks the store for a new one (refresh) and logs in once
// more:
//
//   - renewed: the server ended the store's first token early; the
//     renewed one logs in and the account syncs;
//   - refused again: the server refuses every token; after two logins and
//     two token grants the account is parked as a credential failure;
//   - grant revoked: the store answers REAUTHORIZATION_NEEDED; the account
//     is parked with the store's reason (not replaced), nothing logs in,
//     and the store is not asked again;
//   - token endpoint down: the renewal fails with UNAVAILABLE, the account
//     is retried (never parked), and syncs once the endpoint works.
func TestMemOAuthLoginRetry(t *testing.T) {
	cases := []struct {
		name string
		// accept says whether the server takes the n-th token it is shown.
		accept func(srv *oauthtest.Server, n int, token string) bool
		// revoke revokes the grant before the account starts.
		revoke    bool
		state     mailbusv1.SyncState
		reason    string
		logins    int // logins when state is reached; -1: at least 2
		refreshes int
		retrying  bool // a RETRYING status event is seen on the way
	}{
		{name: "renewed", accept: func(srv *oauthtest.Server, n int, tok string) bool { return n > 1 && srv.Valid(tok) },
			state: mailbusv1.SyncState_SYNC_STATE_IDLE, logins: -1, refreshes: 2},
		{name: "refused again", accept: func(*oauthtest.Server, int, string) bool { return false },
			state: mailbusv1.SyncState_SYNC_STATE_PARKED, reason: "authentication failed", logins: 2, refreshes: 2},
		{name: "grant revoked", revoke: true, accept: func(srv *oauthtest.Server, _ int, tok string) bool { return srv.Valid(tok) },
			state: mailbusv1.SyncState_SYNC_STATE_PARKED, reason: "re-authorization needed", logins: 0, refreshes: 0},
		{name: "token endpoint down", accept: func(srv *oauthtest.Server, n int, tok string) bool {
			if n == 1 {
				srv.FailNext(1) // the renewal this refusal causes fails
				return false
			}
			return n > 2 && srv.Valid(tok)
		}, state: mailbusv1.SyncState_SYNC_STATE_IDLE, logins: -1, refreshes: 2, retrying: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := oauthtest.New(oauthtest.WithRotation())
			t.Cleanup(srv.Close)
			var seen tokenLog
			h := &memHooks{mechs: []string{"XOAUTH2", "OAUTHBEARER"},
				xoauth2: func(user, token string) (string, error) {
					if user == "alice" && c.accept(srv, seen.add(token), token) {
						return "secret", nil
					}
					return "", errors.New("invalid token")
				}}
			e := startStore(t)
			mem := startMemHooked(t, h)
			tp := dialPlain(t, mem.addr, "alice", "secret")
			appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
			a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "", oauthAccount(srv))
			if c.revoke {
				srv.Revoke()
			}
			js := e.consume(t, a.Id)
			startSync(t, e, nil)
			var st *mailbusv1.AccountStatus
			waitFor(t, c.state.String(), func() bool {
				st = e.account(t, a.Id).GetStatus()
				return st.GetState() == c.state
			})
			logins, refreshes := seen.count(), srv.Refreshes()
			if !strings.Contains(st.GetReason(), c.reason) {
				t.Errorf("status reason %q, want %q", st.GetReason(), c.reason)
			}
			if (c.logins >= 0 && logins != c.logins) || (c.logins < 0 && logins < 2) {
				t.Errorf("%d logins, want %d", logins, c.logins)
			}
			if refreshes != c.refreshes {
				t.Errorf("%d token grants, want %d", refreshes, c.refreshes)
			}
			if c.state == mailbusv1.SyncState_SYNC_STATE_IDLE {
				if err := sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")); err != nil {
					t.Error(err)
				}
			}
			if c.revoke {
				if !strings.Contains(st.GetReason(), "--refresh-token-file") {
					t.Errorf("the store's reason was replaced: %q", st.GetReason())
				}
				// The worker stops on the store's answer and never asks
				// the token endpoint: one request, the refused refresh.
				if hits := srv.Hits(); hits != 1 {
					t.Errorf("%d token requests, want 1", hits)
				}
			}
			parked := func(ev *mailbusv1.Event) bool {
				return ev.GetAccountStatus().GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
			}
			retrying := func(ev *mailbusv1.Event) bool {
				return ev.GetAccountStatus().GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_RETRYING
			}
			if c.retrying && js.count(retrying) == 0 {
				t.Error("no RETRYING status while the token endpoint failed")
			}
			if c.state != mailbusv1.SyncState_SYNC_STATE_PARKED && js.count(parked) != 0 {
				t.Error("the account was parked on the way")
			}
		})
	}
}

// TestMemOAuthReconnect: connections opened later (IDLE and work
// connections after a cut) ask the store for the token before each login,
// so an account whose token the server has ended keeps syncing: the
// refused token is renewed once, the new mail arrives, nothing is parked.
func TestMemOAuthReconnect(t *testing.T) {
	srv := oauthtest.New(oauthtest.WithRotation())
	t.Cleanup(srv.Close)
	h := &memHooks{mechs: []string{"OAUTHBEARER"},
		xoauth2: func(user, token string) (string, error) {
			if user == "alice" && srv.Valid(token) {
				return "secret", nil
			}
			return "", errors.New("invalid token")
		}}
	e := startStore(t)
	mem := startMemHooked(t, h)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "", oauthAccount(srv))
	js := e.consume(t, a.Id)
	s := startSync(t, e, nil)
	waitFor(t, "the initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	for round := range 3 {
		before := srv.Refreshes()
		srv.ExpireAccessTokens()
		s.cuts.cutAll()
		appendMsg(t, tp, "INBOX", testMessage(round+2, "INBOX"))
		waitFor(t, "the new mail after the cut", func() bool {
			return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
		})
		if srv.Refreshes() == before {
			t.Fatalf("round %d: no token renewed after the server ended the token", round)
		}
	}
	if n := js.count(func(ev *mailbusv1.Event) bool {
		return ev.GetAccountStatus().GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
	}); n != 0 {
		t.Fatalf("parked %d times", n)
	}
}

// TestMemOAuthReauthorizationStops: after the store answers
// REAUTHORIZATION_NEEDED, the worker asks no more: while a second account
// on the same imapsync syncs (many backoff periods of a worker that kept
// retrying), the parked account's GetAccountSecret calls stay at one, and
// its status keeps the store's reason.
func TestMemOAuthReauthorizationStops(t *testing.T) {
	srv := oauthtest.New()
	t.Cleanup(srv.Close)
	h := &memHooks{mechs: []string{"PLAIN", "OAUTHBEARER"},
		xoauth2: func(user, token string) (string, error) {
			if srv.Valid(token) {
				return "secret", nil
			}
			return "", errors.New("invalid token")
		}}
	e := startStore(t)
	mem := startMemHooked(t, h)
	revoked := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "", oauthAccount(srv))
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
	conn := dialStore(t, e.addr, e.serviceToken, grpc.WithUnaryInterceptor(count))
	startSync(t, e, func(c *imapsync.Config) {
		c.StoreConn = conn
		c.RetryMin, c.RetryMax = 20*time.Millisecond, 50*time.Millisecond
	})
	waitFor(t, "parked", func() bool {
		return e.account(t, revoked.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
	})
	other := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	waitFor(t, "the other account idle", func() bool {
		return e.account(t, other.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	// And a poll of it that finds new mail (PollInterval 1 s, the backoff
	// 50 ms).
	appendMsg(t, dialPlain(t, mem.addr, "alice", "secret"), "INBOX", testMessage(1, "INBOX"))
	waitFor(t, "the other account's new mail", func() bool { return len(e.storeFolder(t, other.Id, "INBOX")) == 1 })
	mu.Lock()
	defer mu.Unlock()
	if n := calls[revoked.Id]; n != 1 {
		t.Errorf("%d GetAccountSecret calls for the account that needs re-authorization, want 1", n)
	}
	if st := e.account(t, revoked.Id).GetStatus(); !strings.Contains(st.GetReason(), "re-authorization needed") {
		t.Errorf("status %v", st)
	}
	if srv.Hits() != 1 {
		t.Errorf("%d token requests, want 1", srv.Hits())
	}
}

// orderedConns keeps an account's upstream connections in the order they
// were opened (the work connection first, then IDLE connections).
type orderedConns struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (o *orderedConns) wrap(_ string, nc net.Conn) net.Conn {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.conns = append(o.conns, nc)
	return nc
}

// TestMemOAuthIdleRelogin: an IDLE connection that reconnects during a
// session asks the store for the token before it logs in, not reusing the
// session's first token: after the server ended the tokens and only the
// IDLE connection was cut, it logs in again (the refused token renewed
// once) while the work connection stays up.
func TestMemOAuthIdleRelogin(t *testing.T) {
	srv := oauthtest.New(oauthtest.WithRotation())
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	accepted := 0
	h := &memHooks{mechs: []string{"OAUTHBEARER"},
		xoauth2: func(user, token string) (string, error) {
			if user == "alice" && srv.Valid(token) {
				mu.Lock()
				accepted++
				mu.Unlock()
				return "secret", nil
			}
			return "", errors.New("invalid token")
		}}
	e := startStore(t)
	mem := startMemHooked(t, h, "Archive")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "", oauthAccount(srv))
	conns := &orderedConns{}
	startSync(t, e, func(c *imapsync.Config) { c.Connections = 2; c.WrapConn = conns.wrap })
	waitFor(t, "the work and the IDLE connection logged in", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return accepted >= 2
	})
	waitFor(t, "idle", func() bool { return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE })
	mu.Lock()
	before := accepted
	mu.Unlock()
	grants := srv.Refreshes()
	srv.ExpireAccessTokens()
	conns.mu.Lock()
	if len(conns.conns) != 2 {
		t.Fatalf("%d connections, want the work and the IDLE one", len(conns.conns))
	}
	conns.conns[1].Close() // the IDLE connection only
	conns.mu.Unlock()
	waitFor(t, "the IDLE connection logged in again", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return accepted > before
	})
	if srv.Refreshes() == grants {
		t.Error("logged in again without a renewed token")
	}
	if st := e.account(t, a.Id).GetStatus(); st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Errorf("parked: %v", st)
	}
}
