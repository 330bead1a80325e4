package db_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthtest"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

func newClock() *clock { return &clock{t: time.Now()} }

// oauthAccount is an IMAP account whose access token the store obtains
// from srv.
func oauthAccount(name string, srv *oauthtest.Server, refreshToken string) *mailbusv1.Account {
	return &mailbusv1.Account{
		Name: name, Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "imap.example.com", Port: 993,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "alice@example.com",
		Oauth2: &mailbusv1.Oauth2Credentials{
			Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC, TokenUrl: srv.URL,
			ClientId: srv.ClientID, ClientSecret: srv.ClientSecret, RefreshToken: refreshToken,
			Scopes: []string{"https://mail.example.com/"},
		},
	}
}

// openWithClock opens a fresh database of backend b on clock c.
func openWithClock(t *testing.T, b dbtest.Backend, c *clock) *db.DB {
	t.Helper()
	cfg := b.Config(t)
	cfg.Now = c.now
	d, err := db.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open %s: %v", b.Name, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// TestOAuthRefreshAhead: the store obtains an access token on the first
// request, hands the same one out while more than db.RefreshAhead is left,
// renews it once less is left, and saves the rotated refresh token with it
// (the server refuses a used refresh token, so a lost rotation would fail
// the next refresh with invalid_grant). A forced refresh renews at once.
func TestOAuthRefreshAhead(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			srv := oauthtest.New(oauthtest.WithRotation())
			defer srv.Close()
			c := newClock()
			d := openWithClock(t, b, c)
			a := mustCreate(t, d, oauthAccount("gmail", srv, srv.Grant()))
			if a.AuthMethod != mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 {
				t.Errorf("auth_method = %v, want XOAUTH2 (implied by oauth2)", a.AuthMethod)
			}

			first, err := d.LoginSecret(ctx, a.Id, false)
			if err != nil {
				t.Fatalf("LoginSecret: %v", err)
			}
			if !srv.Valid(first.Secret) || srv.Refreshes() != 1 {
				t.Fatalf("first token valid=%v after %d refreshes, want a valid token after 1", srv.Valid(first.Secret), srv.Refreshes())
			}
			if want := c.now().Add(time.Hour); !first.Expiry.Equal(want.Truncate(time.Microsecond)) && first.Expiry.Sub(want).Abs() > time.Second {
				t.Errorf("expiry %v, want %v", first.Expiry, want)
			}
			c.add(time.Hour - db.RefreshAhead - time.Minute) // 6 minutes left
			again, err := d.LoginSecret(ctx, a.Id, false)
			if err != nil || again.Secret != first.Secret || srv.Hits() != 1 {
				t.Fatalf("with 6 minutes left: err %v, same token %v, %d requests; want the same token, no request", err, again.Secret == first.Secret, srv.Hits())
			}
			got, err := d.GetAccount(ctx, a.Id)
			if err != nil || got.GetOauth2().GetAccessTokenExpireTime().AsTime().Sub(first.Expiry).Abs() > time.Millisecond {
				t.Errorf("GetAccount oauth2 expiry %v (err %v), want %v", got.GetOauth2().GetAccessTokenExpireTime(), err, first.Expiry)
			}
			c.add(2 * time.Minute) // 4 minutes left
			renewed, err := d.LoginSecret(ctx, a.Id, false)
			if err != nil || renewed.Secret == first.Secret || !srv.Valid(renewed.Secret) || srv.Refreshes() != 2 {
				t.Fatalf("with 4 minutes left: err %v, new token %v, %d refreshes; want a new valid token after 2", err, renewed.Secret != first.Secret, srv.Refreshes())
			}
			forced, err := d.LoginSecret(ctx, a.Id, true)
			if err != nil || forced.Secret == renewed.Secret || srv.Refreshes() != 3 {
				t.Fatalf("forced: err %v, new token %v, %d refreshes; want a new token after 3", err, forced.Secret != renewed.Secret, srv.Refreshes())
			}
			if srv.Hits() != 3 {
				t.Errorf("%d token requests, want 3", srv.Hits())
			}
		})
	}
}

// TestOAuthReauthorization: invalid_grant parks the account with the
// reason naming the command that fixes it and an account.status event;
// later requests fail at once without asking the server again, fetcher
// reports do not hide the reason, and an update with a new refresh token
// brings it back.
func TestOAuthReauthorization(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		srv := oauthtest.New()
		defer srv.Close()
		a := mustCreate(t, d, oauthAccount("outlook", srv, srv.Grant()))
		if _, err := d.LoginSecret(ctx, a.Id, false); err != nil {
			t.Fatalf("LoginSecret: %v", err)
		}
		srv.Revoke()
		_, err := d.LoginSecret(ctx, a.Id, true)
		if !errors.Is(err, db.ErrReauthorization) || !errors.Is(err, db.ErrPrecondition) {
			t.Fatalf("LoginSecret after revocation: %v, want ErrReauthorization", err)
		}
		got, err := d.GetAccount(ctx, a.Id)
		if err != nil {
			t.Fatal(err)
		}
		st := got.GetStatus()
		if st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), "re-authorization needed") ||
			!strings.Contains(st.GetReason(), "mailbus account update outlook --reauthorize") {
			t.Fatalf("status %v %q, want PARKED: re-authorization needed ... mailbus account update outlook --reauthorize", st.GetState(), st.GetReason())
		}
		evs := allEvents(t, d, a.Id)
		last := evs[len(evs)-1]
		if kindOf(last) != "account.status" || !strings.Contains(last.GetAccountStatus().GetStatus().GetReason(), "re-authorization needed") {
			t.Fatalf("last event %s %v, want account.status with the reason", kindOf(last), last)
		}
		hits := srv.Hits()
		if _, err := d.LoginSecret(ctx, a.Id, true); !errors.Is(err, db.ErrReauthorization) || srv.Hits() != hits {
			t.Fatalf("LoginSecret of the parked account: %v after %d more requests, want ErrReauthorization without a request", err, srv.Hits()-hits)
		}
		if err := d.ReportStatus(ctx, a.Id, &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_RETRYING, Reason: "get account secret: failed precondition"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := d.GetAccount(ctx, a.Id); got.GetStatus().GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED {
			t.Fatalf("a fetcher's report un-parked the account: %v", got.GetStatus())
		}

		up, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: a.Id, Oauth2: &mailbusv1.Oauth2Credentials{RefreshToken: srv.Grant()}}, []string{"oauth2.refresh_token"})
		if err != nil {
			t.Fatalf("UpdateAccount oauth2.refresh_token: %v", err)
		}
		if up.GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
			t.Fatalf("still parked after the update: %v", up.GetStatus())
		}
		sec, err := d.LoginSecret(ctx, a.Id, false)
		if err != nil || !srv.Valid(sec.Secret) {
			t.Fatalf("LoginSecret after the update: %v (valid %v)", err, srv.Valid(sec.Secret))
		}
	})
}

// TestOAuthClientRefused: a wrong client secret (invalid_client) can
// never succeed on retry: the account is parked with a reason naming the
// client secret and the command that fixes it, later requests fail at
// once, and an update with the right secret brings it back.
func TestOAuthClientRefused(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		srv := oauthtest.New()
		defer srv.Close()
		acct := oauthAccount("work", srv, srv.Grant())
		acct.Oauth2.ClientSecret = "not-the-secret"
		a := mustCreate(t, d, acct)
		_, err := d.LoginSecret(ctx, a.Id, false)
		if !errors.Is(err, db.ErrReauthorization) || errors.Is(err, db.ErrTokenEndpoint) {
			t.Fatalf("LoginSecret with a wrong client secret: %v, want ErrReauthorization", err)
		}
		got, err := d.GetAccount(ctx, a.Id)
		if err != nil {
			t.Fatal(err)
		}
		st := got.GetStatus()
		for _, want := range []string{"refused the client (invalid_client)", "mailbus account update work --reauthorize --client-secret-file"} {
			if st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), want) {
				t.Fatalf("status %v %q, want PARKED with %q", st.GetState(), st.GetReason(), want)
			}
		}
		if strings.Contains(st.GetReason(), "not-the-secret") {
			t.Fatalf("the reason shows the client secret: %q", st.GetReason())
		}
		hits := srv.Hits()
		if _, err := d.LoginSecret(ctx, a.Id, true); !errors.Is(err, db.ErrReauthorization) || srv.Hits() != hits {
			t.Fatalf("LoginSecret of the parked account: %v after %d more requests, want ErrReauthorization without a request", err, srv.Hits()-hits)
		}
		if _, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: a.Id, Oauth2: &mailbusv1.Oauth2Credentials{ClientSecret: srv.ClientSecret}}, []string{"oauth2.client_secret"}); err != nil {
			t.Fatalf("UpdateAccount oauth2.client_secret: %v", err)
		}
		if sec, err := d.LoginSecret(ctx, a.Id, false); err != nil || !srv.Valid(sec.Secret) {
			t.Fatalf("LoginSecret after the update: %v", err)
		}
	})
}

// TestOAuthRotationSurvivesAGivingUpCaller: a caller that gives up while
// the token request is under way (a fetcher stopping) does not lose the
// refresh token the server rotated meanwhile: the refresh finishes and is
// saved, and the next request gets its access token instead of spending
// the old refresh token (invalid_grant, parked).
func TestOAuthRotationSurvivesAGivingUpCaller(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		srv := oauthtest.New(oauthtest.WithRotation(), oauthtest.WithDelay(time.Second))
		defer srv.Close()
		a := mustCreate(t, d, oauthAccount("rotating", srv, srv.Grant()))
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := d.LoginSecret(ctx, a.Id, false)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("LoginSecret with a deadline shorter than the token request: %v, want the deadline", err)
		}
		// The next request waits for the refresh under way (its claim)
		// and gets its token.
		sec, err := d.LoginSecret(context.Background(), a.Id, false)
		if err != nil {
			t.Fatalf("LoginSecret after a caller gave up: %v (the rotated refresh token was lost)", err)
		}
		if !srv.Valid(sec.Secret) || srv.Refreshes() != 1 {
			t.Fatalf("token valid=%v after %d refreshes, want the one refresh's valid token", srv.Valid(sec.Secret), srv.Refreshes())
		}
	})
}

// TestOAuthUpdateDuringRefresh: an update of the client secret while a
// refresh is under way (its request held at the token endpoint) neither
// loses the refresh token the server rotated (the answer is saved into the
// updated secret) nor lets a second refresh spend the old token meanwhile
// (the claim is kept). Before, the answer was dropped and the next
// refresh parked the account with invalid_grant.
func TestOAuthUpdateDuringRefresh(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		srv := oauthtest.New(oauthtest.WithRotation())
		defer srv.Close()
		arrived, release := make(chan struct{}, 1), make(chan struct{})
		var requests atomic.Int32
		gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			body, _ := io.ReadAll(r.Body)
			select {
			case arrived <- struct{}{}:
				<-release // only the first request waits
			default:
			}
			resp, err := http.Post(srv.URL, r.Header.Get("Content-Type"), strings.NewReader(string(body)))
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
			w.WriteHeader(resp.StatusCode)
			io.Copy(w, resp.Body)
		}))
		defer gate.Close()
		a := mustCreate(t, d, oauthAccount("moving", &oauthtest.Server{URL: gate.URL, ClientID: srv.ClientID, ClientSecret: srv.ClientSecret}, srv.Grant()))

		type result struct {
			sec db.Secret
			err error
		}
		first := make(chan result, 1)
		go func() {
			sec, err := d.LoginSecret(context.Background(), a.Id, false)
			first <- result{sec, err}
		}()
		select {
		case <-arrived:
		case <-time.After(time.Minute):
			t.Fatal("the refresh never reached the token endpoint")
		}
		if _, err := d.UpdateAccount(context.Background(), &mailbusv1.Account{Id: a.Id, Oauth2: &mailbusv1.Oauth2Credentials{ClientSecret: srv.ClientSecret}}, []string{"oauth2.client_secret"}); err != nil {
			t.Fatalf("UpdateAccount oauth2.client_secret during the refresh: %v", err)
		}
		// A second request meanwhile must wait for the refresh under way,
		// not send the same refresh token again.
		second := make(chan result, 1)
		go func() {
			sec, err := d.LoginSecret(context.Background(), a.Id, false)
			second <- result{sec, err}
		}()
		close(release)
		for _, ch := range []chan result{first, second} {
			r := <-ch
			if r.err != nil || !srv.Valid(r.sec.Secret) {
				t.Fatalf("LoginSecret around an update: %v (valid %v)", r.err, srv.Valid(r.sec.Secret))
			}
		}
		if n := requests.Load(); n != 1 || srv.Refreshes() != 1 {
			t.Errorf("%d token requests, %d refreshes; want 1 (the second request waits for the first's claim)", n, srv.Refreshes())
		}
		// The rotated refresh token was kept: a forced renewal works.
		if sec, err := d.LoginSecret(context.Background(), a.Id, true); err != nil || !srv.Valid(sec.Secret) {
			t.Fatalf("forced renewal after the update: %v (the rotated refresh token was lost)", err)
		}
	})
}

// TestOAuthRefusals: which answers of a token endpoint park an account
// (an OAuth error with a 4xx status, but those that say to come back
// later) and which are temporary (5xx, 429, not an OAuth error); a
// redirect is not followed, so the refresh token and client secret never
// reach its target.
func TestOAuthRefusals(t *testing.T) {
	for _, tc := range []struct {
		name       string
		status     int
		body       string
		parked     bool
		wantReason string
	}{
		{"invalid_scope", http.StatusBadRequest, `{"error":"invalid_scope","error_description":"IMAP scope not granted"}`, true, "(invalid_scope: IMAP scope not granted)"},
		{"invalid_request", http.StatusBadRequest, `{"error":"invalid_request"}`, true, "(invalid_request)"},
		{"unauthorized_client", http.StatusUnauthorized, `{"error":"unauthorized_client"}`, true, "refused the client (unauthorized_client)"},
		{"temporarily_unavailable", http.StatusBadRequest, `{"error":"temporarily_unavailable"}`, false, ""},
		{"too many requests", http.StatusTooManyRequests, `{"error":"invalid_request"}`, false, ""},
		{"server error with an OAuth code", http.StatusInternalServerError, `{"error":"invalid_grant"}`, false, ""},
		{"not an OAuth error", http.StatusBadRequest, `<html>bad gateway</html>`, false, ""},
		{"redirect", http.StatusTemporaryRedirect, "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			thief := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				t.Errorf("the redirect's target got %s %s with %d bytes", r.Method, r.URL, len(b))
			}))
			defer thief.Close()
			endpoint := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.status == http.StatusTemporaryRedirect {
					http.Redirect(w, r, thief.URL+"/token", tc.status)
					return
				}
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer endpoint.Close()
			eachBackend(t, func(t *testing.T, d *db.DB) {
				acct := oauthAccount("acct", &oauthtest.Server{URL: endpoint.URL, ClientID: "client", ClientSecret: "client-secret"}, "refresh-token")
				a := mustCreate(t, d, acct)
				_, err := d.LoginSecret(context.Background(), a.Id, false)
				got, gerr := d.GetAccount(context.Background(), a.Id)
				if gerr != nil {
					t.Fatal(gerr)
				}
				st := got.GetStatus()
				if tc.parked {
					if !errors.Is(err, db.ErrReauthorization) || st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED ||
						!strings.Contains(st.GetReason(), tc.wantReason) || !strings.Contains(st.GetReason(), "mailbus account update acct --reauthorize") {
						t.Fatalf("LoginSecret: %v; status %v %q; want parked with %q", err, st.GetState(), st.GetReason(), tc.wantReason)
					}
					return
				}
				if !errors.Is(err, db.ErrTokenEndpoint) || st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
					t.Fatalf("LoginSecret: %v; status %v %q; want a temporary ErrTokenEndpoint, not parked", err, st.GetState(), st.GetReason())
				}
				for _, secret := range []string{"refresh-token", "client-secret"} {
					if strings.Contains(err.Error(), secret) {
						t.Errorf("the error shows %q: %v", secret, err)
					}
				}
			})
		})
	}
}

// TestOAuthTokenEndpointFault: a token endpoint that fails (HTTP 503, not
// JSON) is a temporary error, and the account is not parked.
func TestOAuthTokenEndpointFault(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		srv := oauthtest.New()
		defer srv.Close()
		a := mustCreate(t, d, oauthAccount("flaky", srv, srv.Grant()))
		srv.FailNext(1)
		_, err := d.LoginSecret(ctx, a.Id, false)
		if !errors.Is(err, db.ErrTokenEndpoint) || errors.Is(err, db.ErrReauthorization) {
			t.Fatalf("LoginSecret with the endpoint failing: %v, want ErrTokenEndpoint", err)
		}
		if got, _ := d.GetAccount(ctx, a.Id); got.GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
			t.Fatalf("parked for a fault of the token endpoint: %v", got.GetStatus())
		}
		if sec, err := d.LoginSecret(ctx, a.Id, false); err != nil || !srv.Valid(sec.Secret) {
			t.Fatalf("LoginSecret once the endpoint works: %v", err)
		}
	})
}

// TestOAuthOneRefreshInFlight: many requests at once for an account whose
// token needs renewing cause one token request. On PostgreSQL they come
// from two store instances on the same database.
func TestOAuthOneRefreshInFlight(t *testing.T) {
	for _, b := range dbtest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			// The delay makes the requests overlap the refresh in flight.
			srv := oauthtest.New(oauthtest.WithRotation(), oauthtest.WithDelay(300*time.Millisecond))
			defer srv.Close()
			cfg := b.Config(t)
			d1, err := db.Open(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer d1.Close()
			stores := []*db.DB{d1}
			if b.Name == "postgres" {
				d2, err := db.Open(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer d2.Close()
				stores = append(stores, d2)
			}
			a := mustCreate(t, d1, oauthAccount("shared", srv, srv.Grant()))
			var wg sync.WaitGroup
			tokens := make([]string, 16)
			errs := make([]error, len(tokens))
			for i := range tokens {
				wg.Go(func() {
					sec, err := stores[i%len(stores)].LoginSecret(ctx, a.Id, false)
					tokens[i], errs[i] = sec.Secret, err
				})
			}
			wg.Wait()
			for i := range tokens {
				if errs[i] != nil || tokens[i] != tokens[0] {
					t.Fatalf("request %d: %v, same token %v; want the one token", i, errs[i], tokens[i] == tokens[0])
				}
			}
			if srv.Hits() != 1 {
				t.Fatalf("%d token requests for %d concurrent requests on %d stores, want 1", srv.Hits(), len(tokens), len(stores))
			}
		})
	}
}

// TestOAuthSecretsNotReturned: no answer of the account API carries the
// client secret, the refresh token or the access token.
func TestOAuthSecretsNotReturned(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		srv := oauthtest.New(oauthtest.WithRotation())
		defer srv.Close()
		rt := srv.Grant()
		created := mustCreate(t, d, oauthAccount("private", srv, rt))
		sec, err := d.LoginSecret(ctx, created.Id, false)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.GetAccount(ctx, created.Id)
		if err != nil {
			t.Fatal(err)
		}
		list, err := d.ListAccounts(ctx, 0, 10, 0)
		if err != nil {
			t.Fatal(err)
		}
		updated, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: created.Id, Oauth2: &mailbusv1.Oauth2Credentials{ClientSecret: srv.ClientSecret}}, []string{"oauth2.client_secret"})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range []proto.Message{created, got, list[0], updated} {
			b, _ := proto.Marshal(m)
			j := protojson.Format(m)
			for _, s := range []string{srv.ClientSecret, rt, sec.Secret} {
				if strings.Contains(string(b), s) || strings.Contains(j, s) {
					t.Fatalf("an account answer carries a secret: %s", j)
				}
			}
		}
		if got.GetOauth2().GetClientId() != srv.ClientID || got.GetOauth2().GetTokenUrl() != srv.URL {
			t.Errorf("oauth2 in GetAccount = %v, want the client id and token URL", got.GetOauth2())
		}
	})
}

// TestOAuthBadInput: each bad field is named.
func TestOAuthBadInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		srv := oauthtest.New()
		defer srv.Close()
		for _, tc := range []struct {
			name  string
			edit  func(a *mailbusv1.Account)
			field string
		}{
			{"no refresh token", func(a *mailbusv1.Account) { a.Oauth2.RefreshToken = "" }, "account.oauth2.refresh_token"},
			{"unknown provider", func(a *mailbusv1.Account) { a.Oauth2.Provider = 9 }, "account.oauth2.provider"},
			{"token URL not HTTPS", func(a *mailbusv1.Account) { a.Oauth2.TokenUrl = "http://auth.example.com/token" }, "account.oauth2.token_url"},
			{"no token URL", func(a *mailbusv1.Account) { a.Oauth2.TokenUrl = "" }, "account.oauth2.token_url"},
			{"token URL for google", func(a *mailbusv1.Account) {
				a.Oauth2.Provider = mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE
			}, "account.oauth2.token_url"},
			{"no client id", func(a *mailbusv1.Account) { a.Oauth2.ClientId = "" }, "account.oauth2.client_id"},
			{"password method", func(a *mailbusv1.Account) { a.AuthMethod = mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD }, "account.auth_method"},
			{"secret too", func(a *mailbusv1.Account) { a.Secret = "fixed-token" }, "account.secret"},
			{"scope with a space", func(a *mailbusv1.Account) { a.Oauth2.Scopes = []string{"a b"} }, "account.oauth2.scopes"},
		} {
			a := oauthAccount("bad", srv, "rt")
			tc.edit(a)
			_, err := d.CreateAccount(context.Background(), a)
			var fe *db.FieldError
			if !errors.As(err, &fe) || fe.Field != tc.field {
				t.Errorf("%s: CreateAccount = %v, want an error naming %s", tc.name, err, tc.field)
			}
		}
	})
}
