package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mailbus/mailbus/services/store/internal/relay"
)

// Unpublished returns up to limit unpublished events with the lowest seqs,
// in seq order (relay.Outbox).
func (d *DB) Unpublished(ctx context.Context, limit int) ([]relay.Pending, error) {
	// The read pool: on SQLite the one writer connection may be busy with
	// an ingest commit, and the relay must not wait for it to publish what
	// is already committed.
	rows, err := d.r.QueryContext(ctx, d.rebind(`SELECT seq, event_id, account_id, subject, payload FROM events WHERE published = 0 ORDER BY seq LIMIT ?`), limit)
	if err != nil {
		return nil, fmt.Errorf("db: outbox: %w", err)
	}
	defer rows.Close()
	var out []relay.Pending
	for rows.Next() {
		var p relay.Pending
		var acct int64
		if err := rows.Scan(&p.Seq, &p.EventID, &acct, &p.Subject, &p.Payload); err != nil {
			return nil, fmt.Errorf("db: outbox: %w", err)
		}
		p.AccountID = formatID(acct)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: outbox: %w", err)
	}
	return out, nil
}

// MarkPublished marks events as published (relay.Outbox).
func (d *DB) MarkPublished(ctx context.Context, seqs []int64) error {
	for len(seqs) > 0 {
		n := min(len(seqs), 500)
		args := make([]any, n)
		for i, s := range seqs[:n] {
			args[i] = s
		}
		if _, err := d.w.ExecContext(ctx, d.rebind(`UPDATE events SET published = 1 WHERE seq IN (`+placeholders(n)+`)`), args...); err != nil {
			return fmt.Errorf("db: mark published: %w", err)
		}
		seqs = seqs[n:]
	}
	return nil
}

// UnpublishedCount is the outbox backlog, for metrics.
func (d *DB) UnpublishedCount(ctx context.Context) (int64, error) {
	var n int64
	if err := d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM events WHERE published = 0`).Scan(&n); err != nil {
		return 0, fmt.Errorf("db: outbox backlog: %w", err)
	}
	return n, nil
}

// relayLockKey is the PostgreSQL advisory lock the relay leader holds.
const relayLockKey = 7400002

// Leader returns the relay's leader election: on PostgreSQL a session
// advisory lock held on a dedicated connection, so that of several store
// replicas one relay publishes; nil on SQLite, where one process owns the
// database.
func (d *DB) Leader() relay.Leader {
	if d.dialect != Postgres {
		return nil
	}
	return &pgLeader{db: d.w, poll: time.Second}
}

type pgLeader struct {
	db   *sql.DB
	poll time.Duration
}

// Acquire blocks until this replica holds the lock. The lock lives as long
// as the connection: a crashed replica's lock is released by PostgreSQL when
// its connection drops. The returned context ends when a health check of
// the connection fails.
func (l *pgLeader) Acquire(ctx context.Context) (context.Context, func(), error) {
	for {
		conn, err := l.db.Conn(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("db: leader connection: %w", err)
		}
		var got bool
		err = conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, relayLockKey).Scan(&got)
		if err == nil && got {
			return l.hold(ctx, conn)
		}
		conn.Close()
		if err != nil && !errors.Is(err, context.Canceled) && !strings.Contains(err.Error(), "connection") {
			return nil, nil, fmt.Errorf("db: leader lock: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(l.poll):
		}
	}
}

func (l *pgLeader) hold(ctx context.Context, conn *sql.Conn) (context.Context, func(), error) {
	leadCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(l.poll)
		defer t.Stop()
		for {
			select {
			case <-leadCtx.Done():
				return
			case <-t.C:
				pctx, pcancel := context.WithTimeout(leadCtx, l.poll*3)
				err := conn.PingContext(pctx)
				pcancel()
				if err != nil && leadCtx.Err() == nil {
					cancel()
					return
				}
			}
		}
	}()
	release := func() {
		cancel()
		<-done
		rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer rcancel()
		conn.ExecContext(rctx, `SELECT pg_advisory_unlock($1)`, relayLockKey)
		conn.Close()
	}
	return leadCtx, release, nil
}

// BlobCount is the number of stored bodies, for tests and metrics.
func (d *DB) BlobCount(ctx context.Context) int64 {
	var n int64
	d.r.QueryRowContext(ctx, `SELECT COUNT(*) FROM blobs`).Scan(&n)
	return n
}
