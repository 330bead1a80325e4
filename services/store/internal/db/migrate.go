package db

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// migration is one schema step: SQL for both dialects, or per dialect.
// {{pk}} and {{blob}} are replaced per dialect, {{unixnow}} by the
// store clock's Unix time in seconds (at least 1). name says what it does,
// for mailbus-store migrate status.
type migration struct {
	name                   string
	both, sqlite, postgres string
}

func (m migration) script(d Dialect) string {
	if m.both != "" {
		return m.both
	}
	if d == Postgres {
		return m.postgres
	}
	return m.sqlite
}

// migrations are applied in order, each once, in its own transaction. Never
// edit one that has shipped: add a new one.
var migrations = []migration{
	// 1: the initial schema.
	{name: "initial schema", both: `
CREATE TABLE accounts (
	id {{pk}},
	name TEXT NOT NULL UNIQUE,
	protocol INTEGER NOT NULL,
	config {{blob}} NOT NULL,
	secret {{blob}},
	status {{blob}},
	modseq BIGINT NOT NULL DEFAULT 0,
	min_state BIGINT NOT NULL DEFAULT 0,
	generation BIGINT NOT NULL DEFAULT 1,
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE TABLE mailboxes (
	id {{pk}},
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	name TEXT NOT NULL,
	delimiter TEXT NOT NULL DEFAULT '',
	role INTEGER NOT NULL DEFAULT 0,
	local_only INTEGER NOT NULL DEFAULT 0,
	modseq BIGINT NOT NULL,
	uidvalidity BIGINT NOT NULL DEFAULT 0,
	synced_uidnext BIGINT NOT NULL DEFAULT 0,
	synced_highestmodseq BIGINT NOT NULL DEFAULT 0,
	synced_lowest_uid BIGINT NOT NULL DEFAULT 0,
	initial_sync_done INTEGER NOT NULL DEFAULT 0,
	UNIQUE (account_id, name)
);
CREATE TABLE blobs (
	hash TEXT PRIMARY KEY,
	size BIGINT NOT NULL,
	data {{blob}} NOT NULL,
	created_at BIGINT NOT NULL
);
CREATE TABLE messages (
	id {{pk}},
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	mailbox_id BIGINT NOT NULL REFERENCES mailboxes(id) ON DELETE CASCADE,
	up_mailbox_id BIGINT NOT NULL DEFAULT 0,
	uidvalidity BIGINT NOT NULL DEFAULT 0,
	uid BIGINT NOT NULL DEFAULT 0,
	uidl TEXT,
	blob_hash TEXT NOT NULL REFERENCES blobs(hash),
	size BIGINT NOT NULL,
	flags TEXT NOT NULL DEFAULT '',
	seen INTEGER NOT NULL DEFAULT 0,
	internal_date BIGINT NOT NULL,
	summary {{blob}} NOT NULL,
	modseq BIGINT NOT NULL,
	created_modseq BIGINT NOT NULL,
	pending_writebacks INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX messages_imap_identity ON messages (up_mailbox_id, uidvalidity, uid) WHERE uid > 0;
CREATE UNIQUE INDEX messages_pop3_identity ON messages (account_id, uidl) WHERE uidl IS NOT NULL;
CREATE INDEX messages_by_date ON messages (mailbox_id, internal_date DESC, id DESC);
CREATE INDEX messages_by_blob ON messages (blob_hash);
CREATE INDEX messages_by_account ON messages (account_id);
CREATE TABLE events (
	seq {{pk}},
	event_id TEXT NOT NULL UNIQUE,
	account_id BIGINT NOT NULL,
	state BIGINT NOT NULL,
	kind TEXT NOT NULL,
	object_id BIGINT NOT NULL DEFAULT 0,
	subject TEXT NOT NULL,
	payload {{blob}} NOT NULL,
	published INTEGER NOT NULL DEFAULT 0,
	created_at BIGINT NOT NULL
);
CREATE INDEX events_unpublished ON events (seq) WHERE published = 0;
CREATE INDEX events_by_account ON events (account_id, state, seq);
CREATE INDEX events_by_time ON events (created_at);
CREATE TABLE writebacks (
	id {{pk}},
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	device_id TEXT NOT NULL,
	op {{blob}} NOT NULL,
	status INTEGER NOT NULL DEFAULT 0,
	attempts INTEGER NOT NULL DEFAULT 0,
	reason TEXT NOT NULL DEFAULT '',
	created_at BIGINT NOT NULL,
	updated_at BIGINT NOT NULL
);
CREATE INDEX writebacks_pending ON writebacks (account_id, id) WHERE status = 0;
`},
	// 2: PostgreSQL keeps bodies uncompressed out of line: mail is mostly
	// compressed already (base64 of compressed attachments) or small, and
	// pglz on every insert halved the ingest rate (decision 0002).
	{name: "PostgreSQL: message bodies uncompressed, out of line", postgres: `ALTER TABLE blobs ALTER COLUMN data SET STORAGE EXTERNAL`, sqlite: `SELECT 1`},
	// 3: a message moved or appended upstream without COPYUID/APPENDUID
	// waits for the next sync to find it by content hash (decision 0004).
	{name: "messages awaiting placement", both: `ALTER TABLE messages ADD COLUMN awaiting_placement INTEGER NOT NULL DEFAULT 0`},
	// 4: the UIDLs of POP3 messages deleted in the store, so that a fetcher
	// in keep mode does not download them again.
	{name: "UIDL tombstones of deleted POP3 messages", both: `CREATE TABLE uidl_tombstones (
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	uidl TEXT NOT NULL,
	deleted_at BIGINT NOT NULL,
	PRIMARY KEY (account_id, uidl)
)`},
	// 5: fencing (decision 0011): the largest lease token accepted from a
	// fetcher per account and fetcher service.
	{name: "fencing lease tokens", both: `CREATE TABLE lease_tokens (
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	service TEXT NOT NULL,
	token BIGINT NOT NULL,
	PRIMARY KEY (account_id, service)
)`},
	// 6: a SQLite store keeps large bodies as content-addressed files; the
	// row stays (for the foreign key, dedupe and collection) with empty
	// data (decision 0014).
	{name: "SQLite: large bodies as files", both: `ALTER TABLE blobs ADD COLUMN in_file INTEGER NOT NULL DEFAULT 0`},
	// 7: API tokens (decision 0016): only a SHA-256 hash of each secret,
	// found by its public id; a device token's accounts in their own table,
	// so that deleting an account takes it out of every token's scope.
	{name: "API tokens", both: `CREATE TABLE api_tokens (
	id {{pk}},
	public_id TEXT NOT NULL UNIQUE,
	name TEXT NOT NULL,
	role INTEGER NOT NULL,
	read_only INTEGER NOT NULL DEFAULT 0,
	secret_hash {{blob}} NOT NULL,
	created_at BIGINT NOT NULL,
	revoked_at BIGINT NOT NULL DEFAULT 0
);
CREATE TABLE api_token_accounts (
	token_id BIGINT NOT NULL REFERENCES api_tokens(id) ON DELETE CASCADE,
	account_id BIGINT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
	PRIMARY KEY (token_id, account_id)
)`},
	// 8: API tokens expire (issue 16): 0 is never.
	{name: "API tokens expire", both: `ALTER TABLE api_tokens ADD COLUMN expires_at BIGINT NOT NULL DEFAULT 0`},
	// 9: OAuth 2.0 accounts (issue 14, decision 0036): the access token's
	// expiry (shown by GetAccount; the token itself is in the sealed
	// secret), the claim on a refresh in flight (Unix microseconds until
	// it lapses), and the parking for re-authorization after invalid_grant.
	{name: "OAuth 2.0 token refresh", both: `ALTER TABLE accounts ADD COLUMN oauth_expires_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN oauth_refresh_until BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN reauth_needed INTEGER NOT NULL DEFAULT 0`},
	// 10: IMAP UIDs kept in the store (issue 15, decision 0040): each
	// mailbox's UIDVALIDITY and next UID, each message's UID in its
	// mailbox, and store-wide the last UIDVALIDITY handed out (every
	// mailbox of the store gets a different one). Existing messages are
	// numbered in id order per mailbox; existing mailboxes get distinct
	// UIDVALIDITYs from the time of the migration on ({{unixnow}} + 1,
	// + 2, ... in id order). Old binaries must not write once it is
	// applied: they would insert messages without a UID and move them
	// keeping the UID of the mailbox they left (README, "Schema migrations").
	{name: "IMAP UIDs in the store", both: `ALTER TABLE mailboxes ADD COLUMN imap_uidvalidity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE mailboxes ADD COLUMN imap_uidnext BIGINT NOT NULL DEFAULT 1;
ALTER TABLE messages ADD COLUMN imap_uid BIGINT NOT NULL DEFAULT 0;
UPDATE messages SET imap_uid = r.n FROM (SELECT id, ROW_NUMBER() OVER (PARTITION BY mailbox_id ORDER BY id) AS n FROM messages) AS r WHERE messages.id = r.id;
CREATE UNIQUE INDEX messages_by_imap_uid ON messages (mailbox_id, imap_uid);
UPDATE mailboxes SET imap_uidnext = 1 + COALESCE((SELECT MAX(imap_uid) FROM messages WHERE messages.mailbox_id = mailboxes.id), 0), imap_uidvalidity = {{unixnow}} + r.n FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY id) AS n FROM mailboxes) AS r WHERE mailboxes.id = r.id;
CREATE TABLE imap_uidvalidity_floor (id INTEGER PRIMARY KEY, last BIGINT NOT NULL);
INSERT INTO imap_uidvalidity_floor (id, last) SELECT 1, COALESCE(MAX(imap_uidvalidity), {{unixnow}}) FROM mailboxes`},
}

// ErrSchemaNewer is returned when the database has migrations this
// binary does not know: a newer mailbus has upgraded it.
var ErrSchemaNewer = errors.New("db: the database schema is newer than this mailbus")

// Migration is a schema migration as an operator sees it.
type Migration struct {
	// Version numbers the migrations from 1, in the order they apply.
	Version int
	// Name says what the migration does; empty for one this binary does
	// not know (applied by a newer mailbus).
	Name string
	// AppliedAt is when it was applied; zero while it is pending.
	AppliedAt time.Time
}

// SchemaStatus is the schema of a database against this binary's
// migrations.
type SchemaStatus struct {
	// Version is the database's: its highest applied migration, 0 for a
	// new database.
	Version int
	// Known is the highest migration this binary has.
	Known int
	// Migrations are every known migration and every applied one, in
	// order.
	Migrations []Migration
}

// Pending is the number of known migrations not applied yet.
func (s SchemaStatus) Pending() int {
	if s.Version >= s.Known {
		return 0
	}
	return s.Known - s.Version
}

// Newer reports a database migrated by a newer mailbus.
func (s SchemaStatus) Newer() bool { return s.Version > s.Known }

// schemaNewerError explains a database whose schema is newer than this
// binary, and what the operator can do.
func schemaNewerError(version int) error {
	return fmt.Errorf("%w: it is at schema version %d, this mailbus knows versions up to %d. "+
		"A newer mailbus migrated it: run that version (or a newer one), or restore the backup taken before the upgrade",
		ErrSchemaNewer, version, len(migrations))
}

// SchemaStatus reads the applied migrations; it changes nothing (open
// the database with Config.NoMigrate to see it before a rollout).
func (d *DB) SchemaStatus(ctx context.Context) (SchemaStatus, error) {
	st := SchemaStatus{Known: len(migrations)}
	exists := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'`
	if d.dialect == Postgres {
		exists = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'schema_migrations'`
	}
	var n int
	if err := d.r.QueryRowContext(ctx, exists).Scan(&n); err != nil {
		return st, fmt.Errorf("db: schema status: %w", err)
	}
	applied := map[int]time.Time{}
	if n > 0 {
		rows, err := d.r.QueryContext(ctx, `SELECT version, applied_at FROM schema_migrations ORDER BY version`)
		if err != nil {
			return st, fmt.Errorf("db: schema status: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var v int
			var at int64
			if err := rows.Scan(&v, &at); err != nil {
				return st, fmt.Errorf("db: schema status: %w", err)
			}
			applied[v] = time.UnixMicro(at).UTC()
			st.Version = max(st.Version, v)
		}
		if err := rows.Err(); err != nil {
			return st, fmt.Errorf("db: schema status: %w", err)
		}
	}
	for v := 1; v <= max(st.Version, st.Known); v++ {
		m := Migration{Version: v, AppliedAt: applied[v]}
		if v <= len(migrations) {
			m.Name = migrations[v-1].name
		}
		st.Migrations = append(st.Migrations, m)
	}
	return st, nil
}

// Migrate applies the pending migrations, each in its own transaction,
// and returns the versions it applied. A database migrated by a newer
// mailbus is ErrSchemaNewer, and is left as it is. On PostgreSQL, stores
// starting at once take turns (an advisory lock): one migrates, the
// others find nothing left to do.
func (d *DB) Migrate(ctx context.Context) ([]int, error) {
	// The lock comes first: on PostgreSQL, CREATE TABLE IF NOT EXISTS run
	// at once by two sessions can fail with a unique violation on the
	// catalog.
	if d.dialect == Postgres {
		conn, err := d.w.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("db: migrate: %w", err)
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(7400001)`); err != nil {
			return nil, fmt.Errorf("db: migrate lock: %w", err)
		}
		defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(7400001)`)
	}
	if _, err := d.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		return nil, fmt.Errorf("db: migrations table: %w", err)
	}
	var current int
	if err := d.w.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return nil, fmt.Errorf("db: schema version: %w", err)
	}
	if current > len(migrations) {
		return nil, schemaNewerError(current)
	}
	var applied []int
	for v := current + 1; v <= len(migrations); v++ {
		if err := d.applyMigration(ctx, v); err != nil {
			return applied, err
		}
		applied = append(applied, v)
	}
	return applied, nil
}

func (d *DB) applyMigration(ctx context.Context, version int) error {
	script := migrations[version-1].script(d.dialect)
	pk, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	if d.dialect == Postgres {
		pk, blob = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY", "BYTEA"
	}
	unixNow := strconv.FormatInt(max(1, d.now().Unix()), 10)
	script = strings.NewReplacer("{{pk}}", pk, "{{blob}}", blob, "{{unixnow}}", unixNow).Replace(script)
	tx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("db: migration %d: %w", version, err)
	}
	defer tx.Rollback()
	for _, stmt := range strings.Split(script, ";") {
		if strings.TrimSpace(stmt) == "" {
			continue
		}
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("db: migration %d: %w", version, err)
		}
	}
	if _, err := tx.ExecContext(ctx, d.rebind(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`), version, d.nowMicros()); err != nil {
		return fmt.Errorf("db: migration %d: %w", version, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("db: migration %d: %w", version, err)
	}
	return nil
}
