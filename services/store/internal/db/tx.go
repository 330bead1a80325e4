package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// tx is one changing transaction. It locks each account it touches (first
// statement on the account row), hands out the account's next states, and
// writes events to the outbox.
type tx struct {
	d        *DB
	sql      *sql.Tx
	origin   *mailbusv1.Origin
	accounts map[int64]*lockedAccount
	events   int
	// touched are the accounts that got events.
	touched map[int64]bool
	// stmts are the statements prepared in this transaction (SQLite).
	stmts map[string]*sql.Stmt
	// mailboxRefs are the mailboxes named in this transaction's events
	// (see describe).
	mailboxRefs map[int64]*mailbusv1.MailboxRef
	// payload is emit's buffer for an event's protobuf, reused for each
	// event of the transaction: the drivers copy an argument when they
	// bind it, so it is free again once its statement has run.
	payload []byte
	// messageIDs are message ids read from the sequence and not yet used
	// (nextMessageID, PostgreSQL); messageIDsWanted is how many the next
	// read takes (at least one).
	messageIDs       []int64
	messageIDsWanted int
	// uidnext are the IMAP UIDNEXTs of the mailboxes this transaction
	// placed messages in (see nextIMAPUID).
	uidnext map[int64]*uidAlloc
}

// uidAlloc is a mailbox's IMAP UIDNEXT while a transaction hands out its
// UIDs: read once, written back once before the commit, so that a batch
// of messages into one mailbox costs one read and one write, not a write
// per message.
type uidAlloc struct {
	next  int64
	dirty bool
}

// maxIMAPUID is the largest IMAP UID and UIDVALIDITY: both are nonzero
// 32-bit numbers (RFC 3501 2.3.1.1).
const maxIMAPUID = math.MaxUint32

type lockedAccount struct {
	id       int64
	protocol mailbusv1.Protocol
	// name is the account's name, for its events.
	name   string
	modseq int64
	dirty  bool
	// fenced: a lease token was checked (fence) in this transaction;
	// leaseToken is that token.
	fenced     bool
	leaseToken uint64
}

// inTx runs fn in a transaction and commits it; it retries a few times on
// serialisation failures and deadlocks (PostgreSQL) or a busy database.
func (d *DB) inTx(ctx context.Context, origin *mailbusv1.Origin, fn func(*tx) error) error {
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		err = d.tryTx(ctx, origin, fn)
		if err == nil || !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	if err != nil && isUniqueViolation(err) && !errors.Is(err, ErrConflict) {
		// Not a race that a retry resolves: a real clash of names or
		// identities.
		return fmt.Errorf("%w: %v", ErrConflict, err)
	}
	return err
}

func isUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	var lite *sqlite.Error
	switch {
	case errors.As(err, &pg):
		return pg.Code == pgUniqueViolation
	case errors.As(err, &lite):
		return lite.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
	}
	return false
}

func (d *DB) tryTx(ctx context.Context, origin *mailbusv1.Origin, fn func(*tx) error) error {
	sqlTx, err := d.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("db: begin: %w", err)
	}
	t := &tx{d: d, sql: sqlTx, origin: origin, accounts: map[int64]*lockedAccount{}, touched: map[int64]bool{}}
	if err := fn(t); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := t.flushUIDNext(ctx); err != nil {
		sqlTx.Rollback()
		return err
	}
	for _, a := range t.accounts {
		if !a.dirty {
			continue
		}
		if _, err := t.exec(ctx, `UPDATE accounts SET modseq = ? WHERE id = ?`, a.modseq, a.id); err != nil {
			sqlTx.Rollback()
			return fmt.Errorf("db: account state: %w", err)
		}
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("db: commit: %w", err)
	}
	if t.events > 0 && d.onCommit != nil {
		ids := make([]string, 0, len(t.touched))
		for id := range t.touched {
			ids = append(ids, formatID(id))
		}
		d.onCommit(ids)
	}
	return nil
}

// PostgreSQL error codes the store retries on.
const (
	pgSerializationFailure = "40001"
	pgDeadlockDetected     = "40P01"
	pgUniqueViolation      = "23505"
)

// retryable reports whether a retry of the whole transaction may succeed:
// PostgreSQL serialization failures and deadlocks, a unique violation
// between two concurrent inserts of the same key (the retry sees the
// committed row), and a busy SQLite database.
func retryable(err error) bool {
	var pg *pgconn.PgError
	var lite *sqlite.Error
	switch {
	case errors.As(err, &pg):
		return pg.Code == pgSerializationFailure || pg.Code == pgDeadlockDetected || pg.Code == pgUniqueViolation
	case errors.As(err, &lite):
		return lite.Code()&0xff == sqlite3.SQLITE_BUSY
	}
	return false
}

func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if st := t.prepared(ctx, q); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return t.sql.ExecContext(ctx, t.d.rebind(q), args...)
}

// prepared returns the transaction's prepared statement for q on SQLite,
// where parsing a statement costs more than running the small ones ingest
// repeats for every message; nil elsewhere (pgx caches prepared statements
// itself) or if preparing fails (the caller then runs q unprepared and
// reports its error). Only exec and queryRow use it: a statement is not
// shared by two open result sets.
func (t *tx) prepared(ctx context.Context, q string) *sql.Stmt {
	if t.d.dialect != SQLite {
		return nil
	}
	if st, ok := t.stmts[q]; ok {
		return st
	}
	st, err := t.sql.PrepareContext(ctx, q)
	if err != nil {
		return nil
	}
	if t.stmts == nil {
		t.stmts = map[string]*sql.Stmt{}
	}
	t.stmts[q] = st
	return st
}

// insertRowID runs an INSERT of one row on SQLite and returns the new
// row's id, the statement's last insert rowid (an INTEGER PRIMARY KEY is
// the rowid): cheaper than reading a RETURNING clause's result set.
func (t *tx) insertRowID(ctx context.Context, q string, args ...any) (int64, error) {
	res, err := t.exec(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	return res.LastInsertId()
}

// nextMessageID hands out an id for a new message row from the messages
// table's sequence (PostgreSQL), reading as many as the transaction
// expects to insert (messageIDsWanted) in one round trip the first time.
// Ids handed out and not used (a duplicate, a rollback) are gaps, as a
// rolled-back insert leaves them too.
func (t *tx) nextMessageID(ctx context.Context) (int64, error) {
	if len(t.messageIDs) == 0 {
		n := max(1, t.messageIDsWanted)
		t.messageIDsWanted = 0
		rows, err := t.query(ctx, `SELECT nextval(pg_get_serial_sequence('messages', 'id')) FROM generate_series(1, ?)`, n)
		if err != nil {
			return 0, fmt.Errorf("db: message ids: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				return 0, fmt.Errorf("db: message ids: %w", err)
			}
			t.messageIDs = append(t.messageIDs, id)
		}
		if err := rows.Err(); err != nil {
			return 0, fmt.Errorf("db: message ids: %w", err)
		}
		if len(t.messageIDs) == 0 {
			return 0, errors.New("db: message ids: none read")
		}
	}
	id := t.messageIDs[0]
	t.messageIDs = t.messageIDs[1:]
	return id, nil
}

func (t *tx) query(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.sql.QueryContext(ctx, t.d.rebind(q), args...)
}

func (t *tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if st := t.prepared(ctx, q); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return t.sql.QueryRowContext(ctx, t.d.rebind(q), args...)
}

// lock locks the account row for the rest of the transaction and returns
// its state.
func (t *tx) lock(ctx context.Context, accountID int64) (*lockedAccount, error) {
	if a, ok := t.accounts[accountID]; ok {
		return a, nil
	}
	a := &lockedAccount{id: accountID}
	err := t.queryRow(ctx, `UPDATE accounts SET modseq = modseq WHERE id = ? RETURNING modseq, protocol, name`, accountID).Scan(&a.modseq, &a.protocol, &a.name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("account", strconv.FormatInt(accountID, 10))
	}
	if err != nil {
		return nil, fmt.Errorf("db: lock account: %w", err)
	}
	t.accounts[accountID] = a
	return a, nil
}

// lockMailbox locks the account of a mailbox and reads the mailbox after
// the lock, so that what the caller checks is still true at commit.
func (t *tx) lockMailbox(ctx context.Context, id int64) (*mailbusv1.MailboxSyncState, *lockedAccount, error) {
	var acct int64
	err := t.queryRow(ctx, `SELECT account_id FROM mailboxes WHERE id = ?`, id).Scan(&acct)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, notFound("mailbox", formatID(id))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("db: read mailbox: %w", err)
	}
	a, err := t.lock(ctx, acct)
	if err != nil {
		return nil, nil, err
	}
	mb, err := t.mailboxByID(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	return mb, a, nil
}

// nextIMAPUID hands out the next IMAP UID of a mailbox (decision 0040).
// The mailbox's account must be locked: every transaction that places a
// message in a mailbox holds its account's lock, on every store replica,
// so no two hand out the same UID, and a UID handed out is never handed
// out again (UIDNEXT only grows, also when messages are deleted).
func (t *tx) nextIMAPUID(ctx context.Context, mailbox int64) (int64, error) {
	u, ok := t.uidnext[mailbox]
	if !ok {
		u = &uidAlloc{}
		err := t.queryRow(ctx, `SELECT imap_uidnext FROM mailboxes WHERE id = ?`, mailbox).Scan(&u.next)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, notFound("mailbox", formatID(mailbox))
		}
		if err != nil {
			return 0, fmt.Errorf("db: IMAP UIDNEXT: %w", err)
		}
		if t.uidnext == nil {
			t.uidnext = map[int64]*uidAlloc{}
		}
		t.uidnext[mailbox] = u
	}
	if u.next > maxIMAPUID {
		return 0, fmt.Errorf("mailbox %d has used every IMAP UID: %w", mailbox, ErrPrecondition)
	}
	uid := u.next
	u.next++
	u.dirty = true
	return uid, nil
}

// flushUIDNext writes the UIDNEXTs this transaction advanced.
func (t *tx) flushUIDNext(ctx context.Context) error {
	for mb, u := range t.uidnext {
		if !u.dirty {
			continue
		}
		if _, err := t.exec(ctx, `UPDATE mailboxes SET imap_uidnext = ? WHERE id = ?`, u.next, mb); err != nil {
			return fmt.Errorf("db: IMAP UIDNEXT: %w", err)
		}
		u.dirty = false
	}
	return nil
}

// next returns the account's next state; the account must be locked.
func (a *lockedAccount) next() int64 {
	a.modseq++
	a.dirty = true
	return a.modseq
}

// emit writes an event to the outbox. state is the account state the event
// announces; objectID is the message or mailbox it is about (0 for none).
func (t *tx) emit(ctx context.Context, accountID, state, objectID int64, ev *mailbusv1.Event) error {
	args, err := t.eventRow(ctx, accountID, state, objectID, ev)
	if err != nil {
		return err
	}
	return t.writeEvent(ctx, accountID, args)
}

// insertEventSQL writes an event's row; eventRow makes its arguments.
const insertEventSQL = `INSERT INTO events (event_id, account_id, state, kind, object_id, subject, payload, published, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)`

// eventRow completes an event (see emit) and returns the arguments of
// insertEventSQL for it. The payload is in the transaction's buffer,
// valid until the next eventRow.
func (t *tx) eventRow(ctx context.Context, accountID, state, objectID int64, ev *mailbusv1.Event) ([]any, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("db: event id: %w", err)
	}
	ev.Id = id.String()
	ev.AccountId = strconv.FormatInt(accountID, 10)
	ev.State = uint64(state)
	if ev.Origin == nil {
		ev.Origin = t.origin
	}
	if ev.Origin == nil {
		ev.Origin = &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_SYSTEM}
	}
	now := t.d.now()
	ev.Time = timestamppb.New(now)
	if err := t.describe(ctx, accountID, ev); err != nil {
		return nil, err
	}
	kind := events.Kind(ev)
	subject, err := events.Subject(ev)
	if err != nil {
		return nil, fmt.Errorf("db: event subject: %w", err)
	}
	if t.payload, err = (proto.MarshalOptions{}).MarshalAppend(t.payload[:0], ev); err != nil {
		return nil, fmt.Errorf("db: event: %w", err)
	}
	return []any{ev.Id, accountID, state, kind, objectID, subject, t.payload, now.UnixMicro()}, nil
}

// writeEvent inserts an event's row (args from eventRow).
func (t *tx) writeEvent(ctx context.Context, accountID int64, args []any) error {
	if _, err := t.exec(ctx, insertEventSQL, args...); err != nil {
		return fmt.Errorf("db: write event: %w", err)
	}
	t.emitted(accountID)
	return nil
}

// emitted counts an event written for the account.
func (t *tx) emitted(accountID int64) {
	t.events++
	t.touched[accountID] = true
}

// parseID parses a store id from the API.
func parseID(field, s string) (int64, error) {
	if s == "" {
		return 0, invalid(field, "required")
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid(field, "%q is not a valid id", s)
	}
	return id, nil
}

func formatID(id int64) string { return strconv.FormatInt(id, 10) }
