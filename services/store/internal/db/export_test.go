package db

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// RawMessageAfterSummary is the second half of RawMessage, for tests that
// change the database between its two reads.
func (d *DB) RawMessageAfterSummary(ctx context.Context, messageID string, s *mailbusv1.MessageSummary) ([]byte, *mailbusv1.MessageSummary, error) {
	return d.rawMessageOf(ctx, messageID, s)
}

// OnCollectorDecided calls f each time the retention pass holds the blob
// files' lock exclusively, with how many blobs or files it decides on
// under it. The database must keep bodies as files.
func (d *DB) OnCollectorDecided(f func(n int)) { d.files.onDecided = f }

// OnBlobTempWritten calls f with the temporary file of each body kept as a
// file once it is written, before it is renamed into place. The database
// must keep bodies as files.
func (d *DB) OnBlobTempWritten(f func(tmp string)) { d.files.onTempWritten = f }

// OpenAtVersion opens a new database of cfg with the migrations applied
// only up to version, for tests of a later migration on existing rows.
// Migrate applies the rest.
func OpenAtVersion(ctx context.Context, cfg Config, version int) (*DB, error) {
	if cfg.URL == "" {
		// NoMigrate wants the SQLite file to exist: an empty one is an
		// empty database.
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(cfg.DataDir, SQLiteFileName), nil, 0o600); err != nil {
			return nil, err
		}
	}
	cfg.NoMigrate = true
	d, err := Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := d.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
		d.Close()
		return nil, err
	}
	for v := 1; v <= version; v++ {
		if err := d.applyMigration(ctx, v); err != nil {
			d.Close()
			return nil, err
		}
	}
	return d, nil
}

// Exec runs one statement (with ? placeholders) outside the store's
// transactions, for tests that build rows of an older schema.
func (d *DB) Exec(ctx context.Context, q string, args ...any) error {
	_, err := d.w.ExecContext(ctx, d.rebind(q), args...)
	return err
}

// UIDNextReadInTx hands out n IMAP UIDs of a mailbox in one transaction
// and returns the UIDNEXT that the transaction's own reads of the mailbox
// (by id, and by name as UpsertMailboxes reads it) see before the commit
// writes it. The transaction is rolled back.
func (d *DB) UIDNextReadInTx(ctx context.Context, mailboxID string, n int) (byID, byName uint32, err error) {
	id, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return 0, 0, err
	}
	errRollback := errors.New("rolled back")
	err = d.tryTx(ctx, nil, func(t *tx) error {
		mb, _, err := t.lockMailbox(ctx, id)
		if err != nil {
			return err
		}
		for range n {
			if _, err := t.nextIMAPUID(ctx, id); err != nil {
				return err
			}
		}
		got, err := t.mailboxByID(ctx, id)
		if err != nil {
			return err
		}
		acct, _ := parseID("account_id", mb.Mailbox.AccountId)
		named, err := t.mailboxByName(ctx, acct, mb.Mailbox.Name)
		if err != nil {
			return err
		}
		byID, byName = got.Mailbox.ImapUidnext, named.Mailbox.ImapUidnext
		return errRollback
	})
	if errors.Is(err, errRollback) {
		err = nil
	}
	return byID, byName, err
}
