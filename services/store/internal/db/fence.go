package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// ErrStaleLease means a fetcher wrote with a lease token smaller than the
// largest one the store has accepted for the account: another replica has
// taken the account over since (decision 0011). It is deliberately not an
// ErrPrecondition, so that an ingest batch fails as a whole instead of
// reporting it per message.
var ErrStaleLease = errors.New("stale lease token")

// fetcherService names the fetcher service that works accounts of a
// protocol, as in its ownership buckets (ownership.Config.Service). An
// account's protocol never changes, so this is the service whose lease
// tokens the account sees.
func fetcherService(p mailbusv1.Protocol) string {
	if p == mailbusv1.Protocol_PROTOCOL_POP3 {
		return "pop3fetcher"
	}
	return "imapsync"
}

// WithLeaseToken returns a view of d whose fetcher writes (ReportStatus,
// UpsertMailboxes, SetMailboxSyncState, ApplyUpstreamChanges,
// RebindMessages) carry a fetcher's lease token and are fenced with it,
// and whose AccountSecret answers only that token's holder.
// The view shares d's connections. Ingest and AckWriteBack take the token
// from their request instead.
func (d *DB) WithLeaseToken(token uint64) *DB {
	c := *d
	c.leaseToken = token
	return &c
}

// ClaimAccount records that the holder of the lease with this token works
// the account now: later writes with a smaller token are refused. It
// fails with ErrStaleLease if a larger token was accepted before.
func (d *DB) ClaimAccount(ctx context.Context, accountID string, token uint64) error {
	n, err := parseID("account_id", accountID)
	if err != nil {
		return err
	}
	return d.inTx(ctx, nil, func(t *tx) error {
		a, err := t.lock(ctx, n)
		if err != nil {
			return err
		}
		return t.fence(ctx, a, token)
	})
}

// fence checks a fetcher's lease token for a locked account, in the
// transaction of the write it guards: a token smaller than the largest one
// accepted for the account's fetcher service fails with ErrStaleLease; a
// larger one becomes the accepted one (so it commits or rolls back with
// the write). Token 0 ("no ownership in use") is thus accepted only while
// no token was ever accepted for the account.
func (t *tx) fence(ctx context.Context, a *lockedAccount, token uint64) error {
	if a.fenced && token == a.leaseToken {
		return nil // checked already in this transaction
	}
	if token > math.MaxInt64 {
		return invalid("lease_token", "%d is out of range", token)
	}
	service := fetcherService(a.protocol)
	var stored int64
	err := t.queryRow(ctx, `SELECT token FROM lease_tokens WHERE account_id = ? AND service = ?`, a.id, service).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		if token > 0 {
			if _, err := t.exec(ctx, `INSERT INTO lease_tokens (account_id, service, token) VALUES (?, ?, ?)`, a.id, service, int64(token)); err != nil {
				return fmt.Errorf("db: record lease token: %w", err)
			}
		}
	case err != nil:
		return fmt.Errorf("db: read lease token: %w", err)
	case int64(token) < stored:
		return fmt.Errorf("account %d: %s lease token %d is older than %d, accepted before: %w", a.id, service, token, stored, ErrStaleLease)
	case int64(token) > stored:
		if _, err := t.exec(ctx, `UPDATE lease_tokens SET token = ? WHERE account_id = ? AND service = ?`, int64(token), a.id, service); err != nil {
			return fmt.Errorf("db: raise lease token: %w", err)
		}
	}
	a.fenced, a.leaseToken = true, token
	return nil
}

// checkLeaseToken is the read-only form of fence, for reads that only the
// current owner may make (AccountSecret): the view's lease token must not
// be smaller than the largest one accepted for the account's fetcher
// service. It stores nothing.
func (d *DB) checkLeaseToken(ctx context.Context, accountID int64, protocol mailbusv1.Protocol) error {
	if d.leaseToken > math.MaxInt64 {
		return invalid("lease_token", "%d is out of range", d.leaseToken)
	}
	service := fetcherService(protocol)
	var stored int64
	err := d.r.QueryRowContext(ctx, d.rebind(`SELECT token FROM lease_tokens WHERE account_id = ? AND service = ?`), accountID, service).Scan(&stored)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("db: read lease token: %w", err)
	case int64(d.leaseToken) < stored:
		return fmt.Errorf("account %d: %s lease token %d is older than %d, accepted before: %w", accountID, service, d.leaseToken, stored, ErrStaleLease)
	}
	return nil
}
