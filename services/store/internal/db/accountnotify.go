package db

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mailbus/mailbus/pkg/backoff"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// accountsChannel is the PostgreSQL notification channel on which every
// committed change of an account (created, updated, deleted) is announced
// to every store replica, with "<account id> <protocol number>" as payload
// (decision 0028).
const accountsChannel = "mailbus_accounts"

// AnnouncesAccountChanges reports whether the database itself announces
// committed account changes to every store replica (PostgreSQL, through
// ListenAccountChanges); on SQLite, with one store process, the API
// announces them.
func (d *DB) AnnouncesAccountChanges() bool { return d.dialect == Postgres }

// notifyAccountChanged announces the change of account id, of protocol
// (0 for a deleted account) on PostgreSQL when the transaction commits:
// NOTIFY is transactional, so a rolled back change is never announced.
func (t *tx) notifyAccountChanged(ctx context.Context, id int64, protocol mailbusv1.Protocol) error {
	if t.d.dialect != Postgres {
		return nil
	}
	payload := formatID(id) + " " + strconv.Itoa(int(protocol))
	if _, err := t.exec(ctx, `SELECT pg_notify('`+accountsChannel+`', ?)`, payload); err != nil {
		return fmt.Errorf("db: announce account change: %w", err)
	}
	return nil
}

// parseAccountNotification reads a payload of notifyAccountChanged.
func parseAccountNotification(payload string) (id string, protocol mailbusv1.Protocol, ok bool) {
	id, p, found := strings.Cut(payload, " ")
	n, err := strconv.Atoi(p)
	if !found || err != nil || id == "" {
		return "", 0, false
	}
	return id, mailbusv1.Protocol(n), true
}

// ListenAccountChanges calls changed with the id and protocol of each
// account changed by any store replica on this database (this one
// included), as PostgreSQL announces it, and with "" each time the
// listening connection is (re)established, since announcements may have
// been missed before. It returns when ctx ends; on
// SQLite, at once (there is no other replica). Connection failures are
// retried with backoff and logged.
func (d *DB) ListenAccountChanges(ctx context.Context, log *slog.Logger, changed func(id string, protocol mailbusv1.Protocol)) {
	if d.dialect != Postgres {
		return
	}
	b := backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	for {
		err := d.listenOnce(ctx, &b, changed)
		if ctx.Err() != nil {
			return
		}
		delay := b.Next()
		log.Warn("listening for account changes of other store replicas failed; again soon", "err", err, "in", delay.String())
		if !backoff.Sleep(ctx, delay) {
			return
		}
	}
}

func (d *DB) listenOnce(ctx context.Context, b *backoff.Backoff, changed func(id string, protocol mailbusv1.Protocol)) error {
	conn, err := pgx.Connect(ctx, d.url)
	if err != nil {
		return fmt.Errorf("db: connect to listen: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+accountsChannel); err != nil {
		return fmt.Errorf("db: listen: %w", err)
	}
	b.Reset()
	changed("", 0)
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return fmt.Errorf("db: wait for account changes: %w", err)
		}
		if id, protocol, ok := parseAccountNotification(n.Payload); ok {
			changed(id, protocol)
		}
	}
}
