package db

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/accountfield"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/internal/oauthtoken"
)

// OAuth 2.0 accounts (issue 14, decision 0036). The non-secret part of the
// credentials (provider, token URL, client id, scopes) is in the account's
// config; the client secret, the refresh token and the current access
// token with its expiry are one sealed oauthSecret in accounts.secret, so
// that they are encrypted, rotated (RotateSecrets) and cleared (an update
// that moves the account to another server) exactly like a password.
//
// accounts.oauth_refresh_until is a claim on the refresh: a store replica
// refreshes only after it set the claim with a conditional UPDATE (the
// claim is free or has lapsed, and the sealed secret is still the one it
// read), so one refresh per account is in flight across all replicas
// sharing the database; the others wait for the new sealed secret. No
// database lock is held during the HTTP request. The new access token and
// a rotated refresh token are written by one UPDATE that also frees the
// claim, conditional on the secret it replaced.

const (
	// RefreshAhead: an access token with less than this left is renewed
	// before it is handed out, so that a fetcher's session does not start
	// with a token about to expire.
	RefreshAhead = 5 * time.Minute
	// refreshClaim is how long a refresh claim holds; a replica that dies
	// mid-refresh blocks the others this long at most. It is longer than
	// refreshTimeout.
	refreshClaim = 60 * time.Second
	// refreshTimeout bounds one token request.
	refreshTimeout = 30 * time.Second
	// refreshWait is how often a request waiting for another replica's
	// refresh looks again.
	refreshWait = 50 * time.Millisecond
)

// ErrReauthorization means the authorization server refused the
// account's credentials for good (invalid_grant, invalid_client or another
// OAuth error with a 4xx status, see refusalReason): the account is
// parked until it is updated with new credentials.
var ErrReauthorization = errors.New("re-authorization needed")

// ErrTokenEndpoint means the token endpoint failed (unreachable, hanging,
// answering garbage, a 5xx, 429 or temporarily_unavailable): temporary,
// the fetcher retries with backoff and the account is not parked.
var ErrTokenEndpoint = errors.New("the OAuth token endpoint failed")

// oauthSecret is the sealed part of OAuth 2.0 credentials.
type oauthSecret struct {
	ClientSecret string `json:"client_secret,omitempty"`
	RefreshToken string `json:"refresh_token"`
	AccessToken  string `json:"access_token,omitempty"`
	// Expiry is when AccessToken expires, in Unix microseconds; 0 means
	// unknown (it is renewed ahead like one about to expire).
	Expiry int64 `json:"expiry,omitempty"`
	// Obtained is when AccessToken was issued, in Unix microseconds.
	Obtained int64 `json:"obtained,omitempty"`
}

// fresh reports whether the access token may be handed out as it is: more
// than RefreshAhead is left, or, for a token that lives shorter than twice
// RefreshAhead, more than half its lifetime (else a server issuing
// tokens for a few minutes would be asked for a new one on every request).
func (s *oauthSecret) fresh(now time.Time) bool {
	if s.AccessToken == "" || s.Expiry == 0 {
		return false
	}
	ahead := RefreshAhead
	if life := time.Duration(s.Expiry-s.Obtained) * time.Microsecond; s.Obtained > 0 && life/2 < ahead {
		ahead = life / 2
	}
	return time.UnixMicro(s.Expiry).Sub(now) > ahead
}

// refusalReason returns the status reason of an account whose refresh
// the token endpoint refused for good, or nil when the failure is
// temporary. A refusal is an OAuth error answer (RFC 6749 section 5.2)
// with a 4xx status: invalid_grant (the refresh token), invalid_client and
// unauthorized_client (the client), and any other code (invalid_scope,
// invalid_request, ...) but those that say to come back later. 5xx
// answers, 429, answers that are not OAuth errors and network failures
// are the endpoint's own faults: temporary, never parked.
func refusalReason(err error) func(name string) string {
	var oe *oauthtoken.Error
	if !errors.As(err, &oe) || oe.Status < 400 || oe.Status > 499 || oe.Status == http.StatusTooManyRequests {
		return nil
	}
	switch oe.Code {
	case "temporarily_unavailable", "server_error", "slow_down", "authorization_pending":
		return nil
	case "invalid_grant":
		return reauthReason
	case "invalid_client", "unauthorized_client":
		return clientRefusedReason(oe.Code)
	}
	return credentialsRefusedReason(oe)
}

// credentialsRefusedReason is the status reason of an account parked for
// an OAuth error other than invalid_grant and the client's.
func credentialsRefusedReason(oe *oauthtoken.Error) func(name string) string {
	what := oe.Code
	if d := oe.Description; d != "" {
		if r := []rune(d); len(r) > 200 {
			d = string(r[:200]) + "…"
		}
		what += ": " + d
	}
	return func(name string) string {
		return fmt.Sprintf("re-authorization needed: the OAuth server refused the account's credentials (%s): check the client id, secret and scopes and authorize again with `mailbus account update %s --reauthorize --client-secret-file FILE`", what, name)
	}
}

// clientRefusedReason is the status reason of an account parked because
// the authorization server refused the client's credentials
// (invalid_client, unauthorized_client), which no retry can change.
func clientRefusedReason(code string) func(name string) string {
	return func(name string) string {
		return fmt.Sprintf("re-authorization needed: the OAuth server refused the client (%s): check the client id and give its secret again with `mailbus account update %s --reauthorize --client-secret-file FILE`", code, name)
	}
}

// reauthReason is the status reason of an account parked for invalid_grant.
func reauthReason(name string) string {
	return fmt.Sprintf("re-authorization needed: the OAuth server refused the refresh token (invalid_grant); authorize again with `mailbus account update %s --reauthorize --client-secret-file FILE`, or give a new refresh token with --refresh-token-file FILE", name)
}

// validateOAuth2 checks the oauth2 field of an account (without its input
// only secrets, which CreateAccount and UpdateAccount check).
func validateOAuth2(a *mailbusv1.Account) error {
	o := a.Oauth2
	if o == nil {
		return nil
	}
	if a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_UNSPECIFIED {
		a.AuthMethod = mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2
	}
	if a.AuthMethod != mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 {
		return invalid("account.auth_method", "must be AUTH_METHOD_XOAUTH2 with oauth2")
	}
	if a.Secret != "" {
		return invalid("account.secret", "not with oauth2: the store obtains the access token with the refresh token")
	}
	switch o.Provider {
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE, mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_MICROSOFT:
		if o.TokenUrl != "" {
			return invalid("account.oauth2.token_url", "only for the generic provider")
		}
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC:
		if _, err := oauthtoken.TokenURL(o.Provider, o.TokenUrl); err != nil {
			return invalid("account.oauth2.token_url", "%v", err)
		}
	default:
		return invalid("account.oauth2.provider", "unknown provider %d: want OAUTH2_PROVIDER_GOOGLE, _MICROSOFT or _GENERIC", o.Provider)
	}
	if o.ClientId == "" {
		return invalid("account.oauth2.client_id", "required")
	}
	if len(o.ClientId) > 1000 {
		return invalid("account.oauth2.client_id", "longer than 1000 characters")
	}
	if err := accountfield.CheckText("oauth2.client_id", o.ClientId); err != nil {
		return fieldInvalid(err)
	}
	if len(o.Scopes) > 50 {
		return invalid("account.oauth2.scopes", "more than 50 entries")
	}
	for _, s := range o.Scopes {
		if s == "" || len(s) > 1000 || strings.ContainsAny(s, " \t\r\n\x00\"\\") {
			return invalid("account.oauth2.scopes", "entry %q is not a scope", s)
		}
	}
	for _, f := range []struct{ field, v string }{{"client_secret", o.ClientSecret}, {"refresh_token", o.RefreshToken}} {
		if len(f.v) > 16<<10 {
			return invalid("account.oauth2."+f.field, "longer than 16 KiB")
		}
	}
	return nil
}

// refreshTokenRequired refuses OAuth 2.0 credentials without a refresh
// token.
func refreshTokenRequired() error {
	return invalid("account.oauth2.refresh_token", "required: the store renews the access token with it")
}

func (s *oauthSecret) seal() string {
	b, _ := json.Marshal(s) // strings and an integer: cannot fail
	return string(b)
}

func openOAuthSecret(plain []byte) (*oauthSecret, error) {
	var s oauthSecret
	if err := json.Unmarshal(plain, &s); err != nil {
		return nil, fmt.Errorf("db: OAuth credentials: %w", err) // json errors quote no input
	}
	return &s, nil
}

// setOAuthSecret seals s as the account's secret and records the access
// token's expiry (shown by GetAccount); a new secret ends any parking for
// re-authorization, and with newGrant (a new refresh token) any refresh
// claim. Without one, a refresh under way keeps its claim and saves its
// answer into the new secret (refresh).
func (t *tx) setOAuthSecret(ctx context.Context, accountID int64, s *oauthSecret, newGrant bool) error {
	if err := t.setSecret(ctx, accountID, s.seal()); err != nil {
		return err
	}
	q := `UPDATE accounts SET oauth_expires_at = ?, reauth_needed = 0 WHERE id = ?`
	if newGrant {
		q = `UPDATE accounts SET oauth_expires_at = ?, oauth_refresh_until = 0, reauth_needed = 0 WHERE id = ?`
	}
	if _, err := t.exec(ctx, q, s.Expiry, accountID); err != nil {
		return fmt.Errorf("db: store OAuth credentials: %w", err)
	}
	return nil
}

// oauthUpdate applies the oauth2 paths of an UpdateAccount to the sealed
// credentials: "oauth2" replaces them, "oauth2.refresh_token" and
// "oauth2.client_secret" change one part and keep the rest. It returns nil
// when paths name none of them.
func (t *tx) oauthUpdate(ctx context.Context, id int64, a *mailbusv1.Account, paths []string) (*oauthSecret, error) {
	whole, rt, cs := containsPath(paths, "oauth2"), containsPath(paths, "oauth2.refresh_token"), containsPath(paths, "oauth2.client_secret")
	if !whole && !rt && !cs {
		return nil, nil
	}
	in := a.GetOauth2()
	if whole {
		if in == nil {
			return nil, nil // removed: the "secret" path gives the password
		}
		if in.RefreshToken == "" {
			return nil, refreshTokenRequired()
		}
		return &oauthSecret{ClientSecret: in.ClientSecret, RefreshToken: in.RefreshToken}, nil
	}
	if rt && in.GetRefreshToken() == "" {
		return nil, refreshTokenRequired()
	}
	cur := &oauthSecret{}
	var sealed []byte
	if err := t.queryRow(ctx, `SELECT secret FROM accounts WHERE id = ?`, id).Scan(&sealed); err != nil {
		return nil, fmt.Errorf("db: update account: %w", err)
	}
	if sealed != nil {
		plain, err := t.d.openSecret(sealed, id)
		if err != nil {
			return nil, err
		}
		if cur, err = openOAuthSecret(plain); err != nil {
			return nil, err
		}
	}
	if rt {
		cur.RefreshToken = in.RefreshToken
	}
	if cs {
		cur.ClientSecret = in.GetClientSecret()
	}
	cur.AccessToken, cur.Expiry = "", 0
	if cur.RefreshToken == "" {
		return nil, refreshTokenRequired()
	}
	return cur, nil
}

// openSecret opens an account's sealed secret.
func (d *DB) openSecret(sealed []byte, id int64) ([]byte, error) {
	plain, err := d.secrets.Open(sealed, "account/"+formatID(id))
	if errors.Is(err, secretbox.ErrNoKey) {
		return nil, fmt.Errorf("db: open secret of account %d: %w: %w (a key rotation not finished? give the store the old key too)", id, ErrPrecondition, err)
	}
	if err != nil {
		return nil, fmt.Errorf("db: open secret of account %d: %w", id, err)
	}
	return plain, nil
}

// Secret is what a fetcher logs in with.
type Secret struct {
	// Secret is the password or access token; empty when none is stored.
	Secret string
	// Generation is the account generation it belongs to.
	Generation uint64
	// Expiry is when an OAuth 2.0 access token expires; zero otherwise.
	Expiry time.Time
}

// oauthRow is what the refresh reads of an account.
type oauthRow struct {
	name         string
	config       []byte
	sealed       []byte
	generation   int64
	refreshUntil int64
	reauth       bool
}

func (d *DB) readOAuthRow(ctx context.Context, id int64) (*oauthRow, error) {
	var r oauthRow
	var reauth int
	err := d.r.QueryRowContext(ctx, d.rebind(`SELECT name, config, secret, generation, oauth_refresh_until, reauth_needed FROM accounts WHERE id = ?`), id).
		Scan(&r.name, &r.config, &r.sealed, &r.generation, &r.refreshUntil, &reauth)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("account", formatID(id))
	}
	if err != nil {
		return nil, fmt.Errorf("db: read OAuth credentials: %w", err)
	}
	r.reauth = reauth != 0
	return &r, nil
}

// accessToken returns a valid access token of an OAuth 2.0 account,
// renewing it when less than RefreshAhead is left, or when force is set
// and no other request renewed it since this one began. See the comment at
// the top of this file for how replicas agree on who refreshes.
func (d *DB) accessToken(ctx context.Context, id int64, force bool) (Secret, error) {
	var first, written []byte
	for attempt := 0; ; attempt++ {
		r, err := d.readOAuthRow(ctx, id)
		if err != nil {
			return Secret{}, err
		}
		if r.reauth {
			return Secret{}, fmt.Errorf("account %d: %w: %w", id, ErrReauthorization, ErrPrecondition)
		}
		if r.sealed == nil {
			return Secret{Generation: uint64(r.generation)}, nil // cleared by an update: the fetcher parks it
		}
		if attempt == 0 {
			first = r.sealed
		}
		plain, err := d.openSecret(r.sealed, id)
		if err != nil {
			return Secret{}, err
		}
		s, err := openOAuthSecret(plain)
		clear(plain)
		if err != nil {
			return Secret{}, err
		}
		now := d.now()
		renewedSince := !bytes.Equal(first, r.sealed)
		if (s.fresh(now) && (!force || renewedSince)) || (written != nil && bytes.Equal(written, r.sealed)) {
			return Secret{Secret: s.AccessToken, Generation: uint64(r.generation), Expiry: time.UnixMicro(s.Expiry)}, nil
		}
		claimed, err := d.claimRefresh(ctx, id, r.sealed, now)
		if err != nil {
			return Secret{}, err
		}
		if !claimed {
			// Another replica (or request) is refreshing: wait for its
			// result, or for its claim to lapse.
			if err := sleepCtx(ctx, refreshWait); err != nil {
				return Secret{}, err
			}
			continue
		}
		// The token request and the write of its answer run detached
		// from the caller: a server that rotates refresh tokens has
		// spent the old one once it answers, so a caller that gives up
		// (a fetcher stopping, a deadline) must not lose the rotation.
		// The caller stops waiting; the refresh finishes on its own
		// (bounded by refreshTimeout and the write's timeout).
		done := make(chan refreshResult, 1)
		go func() {
			w, err := d.refresh(context.WithoutCancel(ctx), id, r, s)
			done <- refreshResult{written: w, err: err}
		}()
		select {
		case res := <-done:
			if res.err != nil {
				return Secret{}, res.err
			}
			written = res.written
		case <-ctx.Done():
			return Secret{}, ctx.Err()
		}
		// Read back what was written (or what an update wrote meanwhile);
		// the forced renewal is done either way.
		force = false
	}
}

// refreshResult is what a detached refresh returns.
type refreshResult struct {
	written []byte
	err     error
}

// claimRefresh takes the refresh claim of an account whose secret is still
// sealed, and whose claim is free or has lapsed.
func (d *DB) claimRefresh(ctx context.Context, id int64, sealed []byte, now time.Time) (bool, error) {
	res, err := d.w.ExecContext(ctx, d.rebind(`UPDATE accounts SET oauth_refresh_until = ? WHERE id = ? AND oauth_refresh_until < ? AND secret = ?`),
		now.Add(refreshClaim).UnixMicro(), id, now.UnixMicro(), sealed)
	if err != nil {
		return false, fmt.Errorf("db: claim the OAuth refresh: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("db: claim the OAuth refresh: %w", err)
	}
	return n == 1, nil
}

// releaseClaim frees a refresh claim after a failed refresh.
func (d *DB) releaseClaim(id int64, sealed []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = d.w.ExecContext(ctx, d.rebind(`UPDATE accounts SET oauth_refresh_until = 0 WHERE id = ? AND secret = ?`), id, sealed)
}

// refresh runs the token request of a claimed account and records its
// answer: the new access token (and rotated refresh token), or the parking
// for re-authorization. It returns the sealed secret it wrote, or nil when
// the account changed meanwhile and the answer was dropped.
func (d *DB) refresh(ctx context.Context, id int64, r *oauthRow, s *oauthSecret) ([]byte, error) {
	cfg := &mailbusv1.Account{}
	if err := proto.Unmarshal(r.config, cfg); err != nil {
		d.releaseClaim(id, r.sealed)
		return nil, fmt.Errorf("db: account %d config: %w", id, err)
	}
	o := cfg.GetOauth2()
	tokenURL, err := oauthtoken.TokenURL(o.GetProvider(), o.GetTokenUrl())
	if err != nil {
		d.releaseClaim(id, r.sealed)
		return nil, fmt.Errorf("account %d: oauth2 token URL: %v: %w", id, err, ErrPrecondition)
	}
	rctx, cancel := context.WithTimeout(ctx, refreshTimeout)
	tok, err := oauthtoken.Refresh(rctx, d.oauthHTTP, oauthtoken.Request{
		TokenURL: tokenURL, ClientID: o.GetClientId(), ClientSecret: s.ClientSecret, RefreshToken: s.RefreshToken, Scopes: o.GetScopes(),
	}, d.now())
	cancel()
	if reason := refusalReason(err); reason != nil {
		return nil, d.parkForReauthorization(ctx, id, r.sealed, reason)
	}
	switch {
	case err != nil:
		d.releaseClaim(id, r.sealed)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("account %d: %w: %w", id, ErrTokenEndpoint, err)
	}
	now := d.now()
	next := &oauthSecret{ClientSecret: s.ClientSecret, RefreshToken: s.RefreshToken, AccessToken: tok.AccessToken, Obtained: now.UnixMicro()}
	if tok.RefreshToken != "" {
		next.RefreshToken = tok.RefreshToken // rotated: saved with the access token
	}
	if !tok.Expiry.IsZero() {
		next.Expiry = tok.Expiry.UnixMicro()
	} else {
		// No expires_in: assume the common hour, renewed ahead of it.
		next.Expiry = now.Add(time.Hour).UnixMicro()
	}
	// Written even if the caller has gone: the rotated refresh token must
	// not be lost.
	wctx, wcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer wcancel()
	return d.saveRefreshed(wctx, id, r.sealed, s.RefreshToken, next)
}

// saveRefreshed writes a refresh's answer over the sealed secret it was
// made from (was). If the secret changed meanwhile but still holds the
// refresh token the request spent (an update of the client secret, a key
// rotation resealing it), the answer is merged into it: dropping it would
// lose a rotated refresh token, and the next refresh would spend the old
// one again (invalid_grant). Only an update that gave a new refresh token
// drops the answer. It returns the sealed secret written, or nil.
func (d *DB) saveRefreshed(ctx context.Context, id int64, was []byte, spent string, next *oauthSecret) ([]byte, error) {
	for attempt := 0; attempt < 5; attempt++ {
		sealed, err := d.secrets.Seal([]byte(next.seal()), "account/"+formatID(id))
		if err != nil {
			d.releaseClaim(id, was)
			return nil, fmt.Errorf("db: seal secret: %w", err)
		}
		res, err := d.w.ExecContext(ctx, d.rebind(`UPDATE accounts SET secret = ?, oauth_expires_at = ?, oauth_refresh_until = 0 WHERE id = ? AND secret = ?`),
			sealed, next.Expiry, id, was)
		if err != nil {
			return nil, fmt.Errorf("db: store the renewed OAuth access token: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("db: store the renewed OAuth access token: %w", err)
		}
		if n == 1 {
			return sealed, nil
		}
		r, err := d.readOAuthRow(ctx, id)
		if err != nil || r.sealed == nil {
			return nil, nil // removed, or moved to another server: nothing to keep
		}
		plain, err := d.openSecret(r.sealed, id)
		if err != nil {
			return nil, err
		}
		cur, err := openOAuthSecret(plain)
		clear(plain)
		if err != nil {
			return nil, err
		}
		if cur.RefreshToken != spent {
			return nil, nil // new credentials: this answer is of the old grant
		}
		merged := *next
		merged.ClientSecret = cur.ClientSecret
		next, was = &merged, r.sealed
	}
	return nil, fmt.Errorf("db: store the renewed OAuth access token of account %d: the account kept changing", id)
}

// parkForReauthorization parks an account whose refresh token was refused,
// with the reason and an account.status event, unless an update gave it
// new credentials meanwhile.
func (d *DB) parkForReauthorization(ctx context.Context, id int64, sealed []byte, reason func(name string) string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	parked := false
	err := d.inTx(ctx, &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_SYSTEM}, func(t *tx) error {
		a, err := t.lock(ctx, id)
		if err != nil {
			return err
		}
		res, err := t.exec(ctx, `UPDATE accounts SET reauth_needed = 1, oauth_refresh_until = 0 WHERE id = ? AND secret = ?`, id, sealed)
		if err != nil {
			return fmt.Errorf("db: park account: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return err // updated meanwhile: try its new credentials
		}
		parked = true
		st := &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: reason(a.name), UpdateTime: timestamppb.New(t.d.now())}
		var old []byte
		if err := t.queryRow(ctx, `SELECT status FROM accounts WHERE id = ?`, id).Scan(&old); err != nil {
			return fmt.Errorf("db: read status: %w", err)
		}
		prev := &mailbusv1.AccountStatus{}
		if len(old) > 0 {
			if err := proto.Unmarshal(old, prev); err != nil {
				return fmt.Errorf("db: read status: %w", err)
			}
		}
		st.LastSuccessTime = prev.LastSuccessTime
		b, err := proto.Marshal(st)
		if err != nil {
			return fmt.Errorf("db: status: %w", err)
		}
		if _, err := t.exec(ctx, `UPDATE accounts SET status = ? WHERE id = ?`, b, id); err != nil {
			return fmt.Errorf("db: write status: %w", err)
		}
		return t.emit(ctx, id, a.modseq, 0, &mailbusv1.Event{Payload: &mailbusv1.Event_AccountStatus{AccountStatus: &mailbusv1.AccountStatusChanged{Status: st}}})
	})
	if err != nil {
		return err
	}
	if !parked {
		return nil
	}
	return fmt.Errorf("account %d: %w: %w", id, ErrReauthorization, ErrPrecondition)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// defaultOAuthHTTP is the token endpoints' client when Config gives none.
func defaultOAuthHTTP() *http.Client { return &http.Client{Timeout: refreshTimeout} }
