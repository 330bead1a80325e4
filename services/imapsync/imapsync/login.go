package imapsync

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailbus/mailbus/pkg/accountrun"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// dial opens a work connection (with h for what the server sends
// unasked, or nil): it waits for a slot in the host's
// connection budget (reporting that it waits), and IDLE connections of
// any account of the host give theirs up for it.
func (w *account) dial(ctx context.Context, h *imapclient.UnilateralDataHandler) (*imapconn.Conn, error) {
	if w.s.hosts.Waiting(w.a.Host) {
		state := mailbusv1.SyncState_SYNC_STATE_SYNCING
		if w.lastOK.IsZero() && w.a.GetStatus().GetLastSuccessTime() == nil {
			state = mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC
		}
		w.log.Info("waiting for a connection slot", "host", w.a.Host)
		w.report(ctx, state, fmt.Sprintf("waiting for a connection slot to %s (the per-host connection budget is in use)", w.a.Host))
	}
	release, err := w.s.hosts.Acquire(ctx, w.a.Host)
	if err != nil {
		return nil, fmt.Errorf("imapsync: wait for a connection to %s: %w", w.a.Host, err)
	}
	return w.connect(ctx, h, release, nil)
}

// dialIdle opens an IDLE connection, which is optional (STATUS polling
// covers its folder too): only if the host's budget has a free slot now
// (else hostlimit.ErrNoPlace), and c.yield closes when a work connection
// wants the slot.
func (w *account) dialIdle(ctx context.Context, h *imapclient.UnilateralDataHandler) (*imapconn.Conn, error) {
	release, yield, err := w.s.hosts.TryAcquire(ctx, w.a.Host)
	if err != nil {
		return nil, fmt.Errorf("imapsync: IDLE connection to %s: %w", w.a.Host, err)
	}
	return w.connect(ctx, h, release, yield)
}

// connect asks the store for the account's secret and logs in with it: a
// secret read before each login, so that an OAuth 2.0 account logs in
// with an access token the store has renewed ahead of its expiry. If the
// server refuses the token of an OAuth 2.0 account as bad credentials (it
// may have ended it early), the store is asked for a new one (refresh)
// and the login is tried once more, on a new connection (decision 0037);
// a second refusal is a credential failure, which parks the account.
func (w *account) connect(ctx context.Context, h *imapclient.UnilateralDataHandler, release func(), yield <-chan struct{}) (*imapconn.Conn, error) {
	secret, err := w.secret(ctx, false)
	if err != nil {
		release()
		return nil, err
	}
	c, err := w.login(ctx, h, secret)
	var pe *imapconn.PermanentError
	if err != nil && errors.As(err, &pe) && pe.Auth && oauthAccount(w.a) {
		w.log.Info("the server refused the access token; asking the store for a new one and logging in once more", "err", err)
		if secret, err = w.secret(ctx, true); err != nil {
			release()
			return nil, err
		}
		c, err = w.login(ctx, h, secret)
	}
	if err != nil {
		release()
		return nil, err
	}
	c.Hold(release, yield)
	return c, nil
}

// login dials and authenticates with secret.
func (w *account) login(ctx context.Context, h *imapclient.UnilateralDataHandler, secret string) (*imapconn.Conn, error) {
	o := imapconn.DialOptions{Timeout: w.s.cfg.Timeout, RootCAs: w.s.cfg.RootCAs, Secret: secret, Handler: h,
		WarnSkip: func() {
			w.log.Warn("certificate verification is off for this account (insecure_skip_verify)", "host", w.a.Host)
		}}
	if wrap := w.s.cfg.WrapConn; wrap != nil {
		o.Wrap = func(c net.Conn) net.Conn { return wrap(w.a.Id, c) }
	}
	return imapconn.Dial(ctx, w.a, o)
}

// oauthAccount reports whether the store renews the account's access token
// (it has OAuth 2.0 credentials): only then can a refused token be
// replaced by another.
func oauthAccount(a *mailbusv1.Account) bool {
	return a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 && a.GetOauth2() != nil
}

// errReauthorization: the store answered REAUTHORIZATION_NEEDED (the OAuth
// 2.0 refresh token was refused, decision 0036). The store has parked the
// account with its reason; the worker stops without reporting a status of
// its own and without asking again, until the account is updated.
var errReauthorization = errors.New("imapsync: re-authorization needed: the authorization server refused the account's refresh token; the store has parked the account")

// errNoSecret: the store has no password for the account.
var errNoSecret = errors.New("no password stored")

// secret reads the account's password or access token from the store,
// with the lease token (only the current owner may read it); refresh asks
// for a new access token now. An empty one is a permanent error; the
// store's REAUTHORIZATION_NEEDED is errReauthorization; any other failure
// (UNAVAILABLE while the token endpoint fails) is temporary.
func (w *account) secret(ctx context.Context, refresh bool) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	resp, err := w.st.ingest.GetAccountSecret(sctx, &mailbusv1.GetAccountSecretRequest{AccountId: w.a.Id, LeaseToken: w.token, Refresh: refresh})
	if accountrun.IsReauthorizationNeeded(err) {
		return "", fmt.Errorf("%w: %w", errReauthorization, err)
	}
	if err != nil {
		return "", fmt.Errorf("imapsync: account secret: %w", err)
	}
	if resp.Generation != w.a.Generation {
		// The account was updated since the worker got it: the secret is
		// the new one, the host may be the old one. Never send a new
		// secret to an old host.
		w.staleGeneration.Store(true)
		return "", fmt.Errorf("imapsync: the account changed (generation %d, this worker has %d): not logging in until its worker restarts", resp.Generation, w.a.Generation)
	}
	if resp.Secret == "" {
		// Cleared by an update that moved the account to another server
		// (or never set): never log in without the password the account
		// was given for this server.
		return "", imapconn.Permanent("the account has no password stored (changing its host, port or security clears it): set it with `mailbus account update ACCOUNT --password`", errNoSecret)
	}
	return resp.Secret, nil
}
