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

// pruneChunk is how many blobs or files the collector decides on at a
// time, holding off ingest of large bodies meanwhile.
const pruneChunk = 500

// pruneBlobs removes the blobs no message references that were stored
// before cutoff (a younger one may belong to an ingest in flight), their
// files, and files left without a row (a crash between writing a file
// and committing its row). It finds them without holding off ingest, and
// takes the collector's lock only to re-check and remove up to pruneChunk
// of them at a time.
func (d *DB) pruneBlobs(ctx context.Context, cutoff time.Time) (int64, error) {
	var (
		n     int64
		after string
	)
	for {
		hashes, err := d.queryStrings(ctx, `SELECT hash FROM blobs WHERE hash > ? AND created_at < ? AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash) ORDER BY hash LIMIT ?`,
			after, cutoff.UnixMicro(), pruneChunk)
		if err != nil {
			return n, fmt.Errorf("db: prune blobs: %w", err)
		}
		if len(hashes) == 0 {
			break
		}
		after = hashes[len(hashes)-1]
		k, err := d.deleteBlobs(ctx, cutoff, hashes)
		n += k
		if err != nil {
			return n, err
		}
		if len(hashes) < pruneChunk {
			break
		}
	}
	if d.files == nil {
		return n, nil
	}
	return n, d.pruneOrphanFiles(ctx, cutoff)
}

// deleteBlobs removes the blobs of hashes that are still unreferenced and
// older than cutoff, and their files, under the collector's lock.
func (d *DB) deleteBlobs(ctx context.Context, cutoff time.Time, hashes []string) (int64, error) {
	if d.files != nil {
		d.files.gc.Lock()
		defer d.files.gc.Unlock()
		d.files.decided(len(hashes))
	}
	args := make([]any, 0, len(hashes)+1)
	for _, h := range hashes {
		args = append(args, h)
	}
	args = append(args, cutoff.UnixMicro())
	rows, err := d.w.QueryContext(ctx, d.rebind(`DELETE FROM blobs WHERE hash IN (`+placeholders(len(hashes))+`) AND created_at < ? AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.blob_hash = blobs.hash) RETURNING hash, in_file`), args...)
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
	return n, d.files.remove(files)
}

// pruneOrphanFiles removes temporary files and blob files older than
// cutoff that have no row kept as a file. The candidates are found
// without the collector's lock; under it, a few at a time, each is
// checked again (an ingest may have committed its row meanwhile) and
// removed. An ingest that found a file in place before it was removed
// writes it again when it commits (IngestBatch.seal).
func (d *DB) pruneOrphanFiles(ctx context.Context, cutoff time.Time) error {
	tmp, done, err := d.files.stale(cutoff)
	if err != nil {
		return err
	}
	// A temporary file of an earlier process is never relied on: it was
	// left by a crash while writing (stale skips this process's own).
	for _, p := range tmp {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("db: prune blob files: %w", err)
		}
	}
	var orphans []string
	for len(done) > 0 {
		chunk := done[:min(len(done), pruneChunk)]
		done = done[len(chunk):]
		unreferenced, err := d.withoutFileRow(ctx, chunk)
		if err != nil {
			return err
		}
		orphans = append(orphans, unreferenced...)
	}
	for len(orphans) > 0 {
		chunk := orphans[:min(len(orphans), pruneChunk)]
		orphans = orphans[len(chunk):]
		if err := d.removeOrphans(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

// removeOrphans removes the files of hashes that still have no row kept
// as a file, under the collector's lock.
func (d *DB) removeOrphans(ctx context.Context, hashes []string) error {
	d.files.gc.Lock()
	defer d.files.gc.Unlock()
	d.files.decided(len(hashes))
	orphans, err := d.withoutFileRow(ctx, hashes)
	if err != nil {
		return err
	}
	return d.files.remove(orphans)
}

// withoutFileRow returns the hashes that have no blob row kept as a file.
func (d *DB) withoutFileRow(ctx context.Context, hashes []string) ([]string, error) {
	args := make([]any, len(hashes))
	for i, h := range hashes {
		args[i] = h
	}
	found, err := d.queryStrings(ctx, `SELECT hash FROM blobs WHERE in_file = 1 AND hash IN (`+placeholders(len(hashes))+`)`, args...)
	if err != nil {
		return nil, fmt.Errorf("db: prune blob files: %w", err)
	}
	kept := make(map[string]bool, len(found))
	for _, h := range found {
		kept[h] = true
	}
	var out []string
	for _, h := range hashes {
		if !kept[h] {
			out = append(out, h)
		}
	}
	return out, nil
}

// queryStrings runs a read query whose rows are one string each.
func (d *DB) queryStrings(ctx context.Context, query string, args ...any) ([]string, error) {
	rows, err := d.r.QueryContext(ctx, d.rebind(query), args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}
