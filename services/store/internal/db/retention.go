package db

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
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
	n, err := d.pruneBlobs(ctx, d.now().Add(-time.Hour))
	res.Blobs = n
	return res, err
}

// pruneBlobs removes the blobs no message references that were stored
// before cutoff (a younger one may belong to an ingest in flight), their
// files, and files left without a row (a crash between writing a file
// and committing its row).
func (d *DB) pruneBlobs(ctx context.Context, cutoff time.Time) (int64, error) {
	var tmp, stale []string
	if d.files != nil {
		// Listed before taking the lock (ingest waits while it is held);
		// whether a listed file is referenced is decided under it.
		var err error
		if tmp, stale, err = d.files.stale(cutoff); err != nil {
			return 0, err
		}
		d.files.gc.Lock()
		defer d.files.gc.Unlock()
	}
	rows, err := d.w.QueryContext(ctx, d.rebind(`DELETE FROM blobs WHERE created_at < ? AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash) RETURNING hash, in_file`), cutoff.UnixMicro())
	if err != nil {
		// On PostgreSQL a blob adopted by a concurrent ingest fails the
		// foreign key; the next pass tries again.
		return 0, fmt.Errorf("db: prune blobs: %w", err)
	}
	var (
		n     int64
		files []string
	)
	for rows.Next() {
		var (
			hash   string
			inFile bool
		)
		if err := rows.Scan(&hash, &inFile); err != nil {
			rows.Close()
			return n, fmt.Errorf("db: prune blobs: %w", err)
		}
		n++
		if inFile {
			files = append(files, hash)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("db: prune blobs: %w", err)
	}
	if d.files == nil {
		return n, nil
	}
	if err := d.files.remove(files); err != nil {
		return n, err
	}
	return n, d.pruneOrphanFiles(ctx, tmp, stale)
}

// pruneOrphanFiles removes the stale temporary files and the stale blob
// files that have no row kept as a file; the caller holds files.gc
// exclusively, so no ingest is between finding or writing a file and
// committing its row.
func (d *DB) pruneOrphanFiles(ctx context.Context, tmp, done []string) error {
	for _, p := range tmp {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("db: prune blob files: %w", err)
		}
	}
	for len(done) > 0 {
		chunk := done[:min(len(done), 500)]
		done = done[len(chunk):]
		args := make([]any, len(chunk))
		for i, h := range chunk {
			args[i] = h
		}
		rows, err := d.w.QueryContext(ctx, d.rebind(`SELECT hash FROM blobs WHERE in_file = 1 AND hash IN (`+placeholders(len(chunk))+`)`), args...)
		if err != nil {
			return fmt.Errorf("db: prune blob files: %w", err)
		}
		kept := map[string]bool{}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return fmt.Errorf("db: prune blob files: %w", err)
			}
			kept[h] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("db: prune blob files: %w", err)
		}
		var orphans []string
		for _, h := range chunk {
			if !kept[h] {
				orphans = append(orphans, h)
			}
		}
		if err := d.files.remove(orphans); err != nil {
			return err
		}
	}
	return nil
}
