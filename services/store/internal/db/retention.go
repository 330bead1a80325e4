package db

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// PruneResult says what a retention pass removed.
type PruneResult struct {
	Events int64
	Blobs  int64
}

// Prune removes published events older than keep and raises each account's
// min_state past them (changes from before it can no longer be
// calculated), then removes blobs no message references and that are older
// than an hour (a younger one may belong to an ingest in flight).
func (d *DB) Prune(ctx context.Context, keep time.Duration) (PruneResult, error) {
	var res PruneResult
	cutoff := d.now().Add(-keep).UnixMicro()
	rows, err := d.r.QueryContext(ctx, d.rebind(`SELECT account_id, MAX(state) FROM events WHERE created_at < ? AND published = 1 GROUP BY account_id`), cutoff)
	if err != nil {
		return res, fmt.Errorf("db: prune: %w", err)
	}
	type acctMax struct{ acct, state int64 }
	var todo []acctMax
	for rows.Next() {
		var a acctMax
		if err := rows.Scan(&a.acct, &a.state); err != nil {
			rows.Close()
			return res, fmt.Errorf("db: prune: %w", err)
		}
		todo = append(todo, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, fmt.Errorf("db: prune: %w", err)
	}
	for _, a := range todo {
		err := d.inTx(ctx, nil, func(t *tx) error {
			// Lock the account so GetChanges never sees the log pruned but
			// min_state not yet raised.
			if _, err := t.lock(ctx, a.acct); errors.Is(err, ErrNotFound) {
				// A deleted account: its events go without a min_state.
				r, err := t.exec(ctx, `DELETE FROM events WHERE account_id = ? AND created_at < ? AND published = 1`, a.acct, cutoff)
				if err != nil {
					return err
				}
				n, _ := r.RowsAffected()
				res.Events += n
				return nil
			} else if err != nil {
				return err
			}
			if _, err := t.exec(ctx, `UPDATE accounts SET min_state = ? WHERE id = ? AND min_state < ?`, a.state, a.acct, a.state); err != nil {
				return err
			}
			r, err := t.exec(ctx, `DELETE FROM events WHERE account_id = ? AND state <= ? AND published = 1`, a.acct, a.state)
			if err != nil {
				return err
			}
			n, _ := r.RowsAffected()
			res.Events += n
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("db: prune account %d: %w", a.acct, err)
		}
	}
	// Finished write-backs are kept as long as the change log, for
	// inspection, then go.
	if _, err := d.w.ExecContext(ctx, d.rebind(`DELETE FROM writebacks WHERE status <> 0 AND updated_at < ?`), cutoff); err != nil {
		return res, fmt.Errorf("db: prune write-backs: %w", err)
	}
	blobCutoff := d.now().Add(-time.Hour).UnixMicro()
	r, err := d.w.ExecContext(ctx, d.rebind(`DELETE FROM blobs WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash)`), blobCutoff)
	if err != nil {
		// On PostgreSQL a blob adopted by a concurrent ingest fails the
		// foreign key; the next pass tries again.
		return res, fmt.Errorf("db: prune blobs: %w", err)
	}
	res.Blobs, _ = r.RowsAffected()
	return res, nil
}
