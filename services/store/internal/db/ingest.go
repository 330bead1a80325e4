package db

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailflags"
	"github.com/mailbus/mailbus/pkg/mailmsg"
)

// IngestItem is one message to ingest.
type IngestItem struct {
	Meta *mailbusv1.IngestMeta
	Raw  []byte
	// Err, when set, is reported as the item's result without storing it
	// (for example, the stream refused it as too large).
	Err error
}

// prepared is an IngestItem with what can be computed outside the
// transaction.
type prepared struct {
	item    IngestItem
	hash    string
	summary []byte
	// attachments is the message's attachment list, for its
	// message.created event.
	attachments []*mailbusv1.Attachment
	flags       []string
	date        int64
	// inFile: the body is kept as a file, not in the blobs row.
	inFile bool
}

func (d *DB) prepare(it IngestItem) (*prepared, error) {
	if it.Err != nil {
		return nil, it.Err
	}
	if it.Meta == nil {
		return nil, invalid("meta", "required")
	}
	if int64(len(it.Raw)) > d.maxSize {
		return nil, fmt.Errorf("%d bytes, more than the limit of %d: %w", len(it.Raw), d.maxSize, ErrTooLarge)
	}
	sum := sha256.Sum256(it.Raw)
	var hash [2 * sha256.Size]byte
	hex.Encode(hash[:], sum[:])
	p := &prepared{item: it, hash: string(hash[:]), inFile: d.files.wants(len(it.Raw))}
	parsed := mailmsg.Parse(it.Raw, &mailmsg.Options{NoBodies: true})
	s := &mailbusv1.MessageSummary{Envelope: parsed.Envelope, HasAttachments: parsed.HasAttachments, Preview: parsed.Preview}
	p.attachments = parsed.Attachments
	var err error
	if p.summary, err = proto.Marshal(s); err != nil {
		return nil, fmt.Errorf("db: summary: %w", err)
	}
	// Flags come from the server: keep the valid ones rather than refuse
	// the message.
	for _, f := range it.Meta.Flags {
		if c, err := mailflags.Canonical(f); err == nil {
			p.flags = append(p.flags, c)
		}
	}
	p.flags, _ = mailflags.Normalize(p.flags)
	p.date = d.nowMicros()
	if it.Meta.InternalDate != nil && it.Meta.InternalDate.IsValid() {
		p.date = it.Meta.InternalDate.AsTime().UnixMicro()
	}
	return p, nil
}

// Ingest stores a batch of messages in one transaction, idempotently by
// upstream identity. A message already stored is reported with created
// false; an invalid one gets an error in its result and the others go on.
// The returned state is the last account state the batch produced.
func (d *DB) Ingest(ctx context.Context, items []IngestItem) ([]*mailbusv1.IngestResult, uint64, error) {
	b, err := d.PrepareIngest(ctx, items)
	if err != nil {
		return nil, 0, err
	}
	return b.Commit(ctx)
}

// IngestBatch is a batch of messages for one transaction. Each message
// added is prepared at once in the background (hashed, parsed, and a large
// body written as a file), so that a caller streaming messages in has most
// of a batch prepared when it ends, and can fill the next batch while this
// one commits. Every batch must end with Commit or Release.
//
// A batch keeps the collector off its files (blobFiles.gc) only while
// Commit runs: a batch waiting to be committed, or whose caller waits on a
// slow client before or after Commit, holds up no other ingest and no
// retention pass.
type IngestBatch struct {
	d       *DB
	preps   []*preparing
	results []*mailbusv1.IngestResult
	// workers bounds the messages being prepared at once.
	workers chan struct{}
	wg      sync.WaitGroup
	// unlock releases the shared hold on the blob files (see blobFiles.gc)
	// taken when the batch is sealed.
	unlock func()
	sealed bool
}

// preparing is one message of a batch; its fields are set by its worker
// before IngestBatch.wg is done.
type preparing struct {
	p *prepared
	// err is a file that could not be written (the batch fails).
	err error
}

// NewIngestBatch returns an empty batch.
func (d *DB) NewIngestBatch() *IngestBatch {
	n := runtime.GOMAXPROCS(0)
	if d.files != nil {
		// Some wait for an fsync while others hash.
		n = blobFileWriters
	}
	return &IngestBatch{d: d, workers: make(chan struct{}, n)}
}

// Len is the number of messages added.
func (b *IngestBatch) Len() int { return len(b.preps) }

// Add adds a message and starts preparing it. It blocks while as many
// messages as there are workers are being prepared.
func (b *IngestBatch) Add(it IngestItem) {
	b.results = append(b.results, &mailbusv1.IngestResult{Ref: it.Meta.GetRef(), Upstream: it.Meta.GetUpstream()})
	slot := &preparing{}
	b.preps = append(b.preps, slot)
	res := b.results[len(b.results)-1]
	b.workers <- struct{}{}
	b.wg.Add(1)
	go func() {
		defer func() { <-b.workers; b.wg.Done() }()
		p, err := b.d.prepare(it)
		if err != nil {
			res.Error = err.Error()
			return
		}
		slot.p = p
		if p.inFile {
			// Written without the hold on the files: sealing checks
			// under it that the file is (still) there.
			slot.err = b.d.files.write(blobBody{hash: p.hash, raw: p.item.Raw})
		}
	}()
}

// PrepareIngest returns a batch of the items, prepared for Commit: what
// Ingest does before its transaction. Like any batch before Commit, it
// holds nothing: Commit checks its files under the collector's lock.
func (d *DB) PrepareIngest(ctx context.Context, items []IngestItem) (*IngestBatch, error) {
	b := d.NewIngestBatch()
	for _, it := range items {
		b.Add(it)
	}
	b.wg.Wait()
	for _, s := range b.preps {
		if s.err != nil {
			return nil, fmt.Errorf("db: blob files: %w", s.err)
		}
	}
	return b, nil
}

// seal waits for the messages to be prepared, then takes the shared hold
// on the blob files and makes every file of the batch durable: a file the
// collector removed meanwhile is written again, and the directories are
// fsynced (the renames, or an earlier attempt's rename of a file found in
// place, are durable once their directories are).
func (b *IngestBatch) seal(ctx context.Context) error {
	if b.sealed {
		return nil
	}
	b.wg.Wait()
	b.sealed = true
	var bodies []blobBody
	for _, s := range b.preps {
		if s.err != nil {
			return fmt.Errorf("db: blob files: %w", s.err)
		}
		if s.p != nil && s.p.inFile {
			bodies = append(bodies, blobBody{hash: s.p.hash, raw: s.p.item.Raw})
		}
	}
	if len(bodies) == 0 {
		return nil
	}
	b.d.files.gc.RLock()
	b.unlock = b.d.files.gc.RUnlock
	// put finds the files in place (a stat each) and syncs directories.
	return b.d.files.put(ctx, bodies)
}

// Release ends a batch that is not committed.
func (b *IngestBatch) Release() {
	b.wg.Wait()
	if b.unlock != nil {
		b.unlock()
		b.unlock = nil
	}
}

// Commit stores the prepared batch in one transaction (see Ingest) and
// releases it.
func (b *IngestBatch) Commit(ctx context.Context) ([]*mailbusv1.IngestResult, uint64, error) {
	defer b.Release()
	if err := b.seal(ctx); err != nil {
		return nil, 0, err
	}
	preps, results := make([]*prepared, len(b.preps)), b.results
	for i, s := range b.preps {
		preps[i] = s.p
	}
	var state uint64
	origin := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM}
	err := b.d.inTx(ctx, origin, func(t *tx) error {
		t.messageIDsWanted = len(preps)
		h, err := t.readIngestHints(ctx, preps)
		if err != nil {
			return err
		}
		for i, p := range preps {
			if p == nil {
				continue
			}
			id, created, st, err := t.ingestOne(ctx, p, h)
			switch {
			case errors.Is(err, ErrInvalid), errors.Is(err, ErrNotFound), errors.Is(err, ErrPrecondition):
				results[i].Error = err.Error()
				results[i].MessageId, results[i].Created = "", false
			case err != nil:
				return err
			default:
				results[i].Created, results[i].Error = created, ""
				if id != 0 {
					results[i].MessageId = formatID(id)
				}
				state = uint64(st)
			}
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return results, state, nil
}

// ingestOne stores one message unless its upstream identity is known; h
// (from readIngestHints) lets it skip lookups that would find nothing.
func (t *tx) ingestOne(ctx context.Context, p *prepared, h *ingestHints) (id int64, created bool, state int64, err error) {
	meta := p.item.Meta
	acct, err := parseID("meta.account_id", meta.AccountId)
	if err != nil {
		return 0, false, 0, err
	}
	a, err := t.lock(ctx, acct)
	if err != nil {
		return 0, false, 0, err
	}
	if err := t.fence(ctx, a, meta.LeaseToken); err != nil {
		return 0, false, 0, err
	}
	up := meta.Upstream
	var mailbox, upMailbox int64
	var uidl sql.NullString
	switch a.protocol {
	case mailbusv1.Protocol_PROTOCOL_POP3:
		if up.GetUidl() == "" || len(up.GetUidl()) > 70 {
			return 0, false, 0, invalid("meta.upstream.uidl", "required for POP3, 1 to 70 characters")
		}
		uidl = sql.NullString{String: up.Uidl, Valid: true}
		if !h.consumeAbsent(pop3Key(acct, up.Uidl)) {
			err = t.queryRow(ctx, `SELECT id FROM messages WHERE account_id = ? AND uidl = ?`, acct, up.Uidl).Scan(&id)
			if err == nil {
				return id, false, a.modseq, nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return 0, false, 0, fmt.Errorf("db: ingest lookup: %w", err)
			}
			var gone int
			if err := t.queryRow(ctx, `SELECT COUNT(*) FROM uidl_tombstones WHERE account_id = ? AND uidl = ?`, acct, up.Uidl).Scan(&gone); err != nil {
				return 0, false, 0, fmt.Errorf("db: ingest lookup: %w", err)
			}
			if gone > 0 {
				// Deleted in the store before: acknowledged, not stored again.
				return 0, false, a.modseq, nil
			}
		}
		if mailbox, err = t.pop3Inbox(ctx, h, acct); err != nil {
			return 0, false, 0, err
		}
	default:
		if up.GetUid() == 0 || up.GetUidvalidity() == 0 {
			return 0, false, 0, invalid("meta.upstream", "IMAP messages need mailbox_id, uidvalidity and uid")
		}
		if mailbox, err = parseID("meta.upstream.mailbox_id", up.MailboxId); err != nil {
			return 0, false, 0, err
		}
		if owner, err := t.mailboxAccount(ctx, h, mailbox); err != nil || owner != meta.AccountId {
			return 0, false, 0, notFound("mailbox", up.MailboxId)
		}
		upMailbox = mailbox
		if !h.consumeAbsent(imapKey(mailbox, up.Uidvalidity, up.Uid)) {
			err = t.queryRow(ctx, ingestIdentityQuery, mailbox, int64(up.Uidvalidity), int64(up.Uid)).Scan(&id)
			if err == nil {
				return id, false, a.modseq, nil
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return 0, false, 0, fmt.Errorf("db: ingest lookup: %w", err)
			}
		}
		// The upstream echo of a device's move or append: the same bytes
		// in the destination, with a write-back still pending. Adopt the
		// new identity instead of storing a second copy.
		err = sql.ErrNoRows
		if h.mayBeEcho(mailbox, p.hash) {
			err = t.queryRow(ctx, `SELECT id FROM messages WHERE mailbox_id = ? AND blob_hash = ? AND (pending_writebacks > 0 OR awaiting_placement = 1) AND (uid = 0 OR up_mailbox_id <> mailbox_id) ORDER BY id LIMIT 1`, mailbox, p.hash).Scan(&id)
		}
		if err == nil {
			// The same mechanism as a write-back's placement: the new
			// identity, and later pending write-backs retargeted to it.
			pl := &mailbusv1.UpstreamPlacement{MessageId: formatID(id), Upstream: &mailbusv1.UpstreamId{MailboxId: up.MailboxId, Uidvalidity: up.Uidvalidity, Uid: up.Uid}}
			if err := t.place(ctx, a, pl); err != nil {
				return 0, false, 0, fmt.Errorf("db: adopt echo: %w", err)
			}
			return id, false, a.modseq, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, false, 0, fmt.Errorf("db: ingest lookup: %w", err)
		}
	}
	id, state, err = t.insertMessage(ctx, a, p, mailbox, upMailbox, int64(up.GetUidvalidity()), int64(up.GetUid()), uidl)
	return id, true, state, err
}

// insertMessage stores the blob (once per hash) and the message row, with
// its IMAP UID in the mailbox and a message.created event.
//
// On SQLite these are three statements (one writer in process: a
// statement costs no round trip). On PostgreSQL they are one, so that a
// new message costs one round trip instead of three: the message's id is
// taken from its sequence beforehand (nextMessageID), which lets the
// event be built before the row exists, and the blob and message inserts
// run in one statement with data-modifying WITH parts (every part of such
// a statement runs, and the message's foreign key to its blob is checked
// at the statement's end, when the blob row is there).
func (t *tx) insertMessage(ctx context.Context, a *lockedAccount, p *prepared, mailbox, upMailbox, uidvalidity, uid int64, uidl sql.NullString) (int64, int64, error) {
	pg := t.d.dialect == Postgres
	if !pg {
		if _, err := t.exec(ctx, insertBlobSQL, blobArgs(t, p)...); err != nil {
			return 0, 0, fmt.Errorf("db: store blob: %w", err)
		}
	}
	imapUID, err := t.nextIMAPUID(ctx, mailbox)
	if err != nil {
		return 0, 0, err
	}
	state := a.next()
	row := []any{a.id, mailbox, upMailbox, uidvalidity, uid, uidl, p.hash, len(p.item.Raw), mailflags.Join(p.flags),
		boolInt(mailflags.Contains(p.flags, mailflags.Seen)), p.date, p.summary, state, state, imapUID}
	var id int64
	if pg {
		id, err = t.nextMessageID(ctx)
	} else {
		id, err = t.insertRowID(ctx, insertMessageSQL, row...)
	}
	if err != nil {
		return 0, 0, fmt.Errorf("db: insert message: %w", err)
	}
	m := messageRow{id: id, account: a.id, mailbox: mailbox, hash: p.hash, size: int64(len(p.item.Raw)), flags: p.flags, internalDate: p.date, summary: p.summary, modseq: state, imapUID: imapUID}
	atts, omitted := eventAttachments(p.attachments)
	created := &mailbusv1.MessageCreated{Message: m.toMarshalledSummary(), Attachments: atts, OmittedAttachments: omitted}
	ev, err := t.eventRow(ctx, a.id, state, id, &mailbusv1.Event{Payload: &mailbusv1.Event_MessageCreated{MessageCreated: created}})
	if err != nil {
		return 0, 0, err
	}
	if !pg {
		if err := t.writeEvent(ctx, a.id, ev); err != nil {
			return 0, 0, err
		}
		return id, state, nil
	}
	args := append(append(append([]any{id}, row...), ev...), pgBlobArgs(t, p)...)
	if _, err := t.exec(ctx, pgInsertMessageSQL, args...); err != nil {
		return 0, 0, fmt.Errorf("db: insert message: %w", err)
	}
	t.emitted(a.id)
	return id, state, nil
}

// The statements of insertMessage.
const (
	insertBlobSQL     = `INSERT INTO blobs (hash, size, data, in_file, created_at) VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET created_at = EXCLUDED.created_at`
	messageInsColumns = `account_id, mailbox_id, up_mailbox_id, uidvalidity, uid, uidl, blob_hash, size, flags, seen, internal_date, summary, modseq, created_modseq, imap_uid`
	insertMessageSQL  = `INSERT INTO messages (` + messageInsColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	// pgInsertMessageSQL takes the message's id and row, the event's
	// arguments, then the blob's (pgBlobArgs). The body is the last
	// argument: the driver appends the arguments to one buffer, which then
	// grows once for the body instead of being copied again for each
	// argument after it.
	pgInsertMessageSQL = `WITH message AS (INSERT INTO messages (id, ` + messageInsColumns + `) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)),
		event AS (` + insertEventSQL + `)
		INSERT INTO blobs (hash, size, in_file, created_at, data) VALUES (?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET created_at = EXCLUDED.created_at`
)

// pgBlobArgs are blobArgs in the order of pgInsertMessageSQL, the body
// last.
func pgBlobArgs(t *tx, p *prepared) []any {
	data, inFile := p.item.Raw, 0
	if p.inFile {
		data, inFile = []byte{}, 1
	}
	return []any{p.hash, len(p.item.Raw), inFile, t.d.nowMicros(), data}
}

// blobArgs are the arguments of insertBlobSQL for a message's body: the
// bytes in the row, or none when the body is a file.
func blobArgs(t *tx, p *prepared) []any {
	data, inFile := p.item.Raw, 0
	if p.inFile {
		data, inFile = []byte{}, 1
	}
	return []any{p.hash, len(p.item.Raw), data, inFile, t.d.nowMicros()}
}

// storeFiles makes the bodies kept as files durable before the
// transaction that references them. The returned unlock must be called
// once that transaction has ended: until then the collector leaves the
// files alone.
func (d *DB) storeFiles(ctx context.Context, preps []*prepared) (unlock func(), err error) {
	var bodies []blobBody
	for _, p := range preps {
		if p != nil && p.inFile {
			bodies = append(bodies, blobBody{hash: p.hash, raw: p.item.Raw})
		}
	}
	if len(bodies) == 0 {
		return func() {}, nil
	}
	d.files.gc.RLock()
	if err := d.files.put(ctx, bodies); err != nil {
		d.files.gc.RUnlock()
		return nil, err
	}
	return d.files.gc.RUnlock, nil
}

// AppendMessage stores a message a device appends to a mailbox. On an IMAP
// account it records the write-back that appends it upstream; on a POP3
// account (upstream is one-way) the message stays in the store.
func (d *DB) AppendMessage(ctx context.Context, origin *mailbusv1.Origin, mailboxID string, raw []byte, flags []string, date time.Time) (*mailbusv1.MessageSummary, error) {
	mb, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return nil, err
	}
	if len(raw) == 0 {
		return nil, invalid("raw", "required")
	}
	if flags, err = normalizeFlags("flags", flags); err != nil {
		return nil, err
	}
	if date.IsZero() {
		date = d.now()
	}
	p, err := d.prepare(IngestItem{Meta: &mailbusv1.IngestMeta{Flags: flags, InternalDate: timestamppb.New(date)}, Raw: raw})
	if err != nil {
		return nil, err
	}
	unlock, err := d.storeFiles(ctx, []*prepared{p})
	if err != nil {
		return nil, err
	}
	defer unlock()
	var out *mailbusv1.MessageSummary
	err = d.inTx(ctx, origin, func(t *tx) error {
		box, a, err := t.lockMailbox(ctx, mb)
		if err != nil {
			return err
		}
		acct := a.id
		pop3 := a.protocol == mailbusv1.Protocol_PROTOCOL_POP3
		if !pop3 && box.Mailbox.LocalOnly {
			return fmt.Errorf("mailbox %q exists only in the store, and appending to it on an IMAP account would need it upstream: %w", box.Mailbox.Name, ErrPrecondition)
		}
		id, _, err := t.insertMessage(ctx, a, p, mb, 0, 0, 0, sql.NullString{})
		if err != nil {
			return err
		}
		m, err := t.messageByID(ctx, id)
		if err != nil {
			return err
		}
		if out, err = m.toSummary(); err != nil {
			return err
		}
		if pop3 {
			return nil
		}
		return t.addWriteBack(ctx, acct, &mailbusv1.WriteBack{Op: &mailbusv1.WriteBack_Append{Append: &mailbusv1.AppendWriteBack{
			MessageId: out.Id, MailboxId: mailboxID, MailboxName: box.Mailbox.Name, Flags: flags, InternalDate: timestamppb.New(date),
		}}})
	})
	return out, err
}

// ListUpstreamIds calls fn with batches of the stored upstream identities of
// an account (POP3) or of one mailbox (IMAP), ordered by uid or id.
func (d *DB) ListUpstreamIds(ctx context.Context, accountID, mailboxID string, batch int, fn func([]*mailbusv1.UpstreamMessage) error) error {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return err
	}
	protocol, err := d.accountProtocol(ctx, acct)
	if err != nil {
		return err
	}
	q := `SELECT ` + messageColumns + ` FROM messages WHERE account_id = ? AND uidl IS NOT NULL AND id > ? ORDER BY id LIMIT ?`
	if protocol == mailbusv1.Protocol_PROTOCOL_IMAP {
		q = `SELECT ` + messageColumns + ` FROM messages WHERE account_id = ? AND uid > 0 AND id > ? ORDER BY id LIMIT ?`
	}
	args := []any{acct}
	if mailboxID != "" {
		mb, err := parseID("mailbox_id", mailboxID)
		if err != nil {
			return err
		}
		q = `SELECT ` + messageColumns + ` FROM messages WHERE account_id = ? AND up_mailbox_id = ? AND uid > 0 AND id > ? ORDER BY id LIMIT ?`
		args = append(args, mb)
	}
	var after int64
	for {
		rows, err := d.r.QueryContext(ctx, d.rebind(q), append(args, after, batch)...)
		if err != nil {
			return fmt.Errorf("db: list upstream ids: %w", err)
		}
		var out []*mailbusv1.UpstreamMessage
		for rows.Next() {
			m, err := scanMessage(rows)
			if err != nil {
				rows.Close()
				return fmt.Errorf("db: list upstream ids: %w", err)
			}
			out = append(out, &mailbusv1.UpstreamMessage{MessageId: formatID(m.id), Upstream: m.upstream(), Flags: m.flags, ContentHash: m.hash, Size: uint64(m.size)})
			after = m.id
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("db: list upstream ids: %w", err)
		}
		if len(out) > 0 {
			if err := fn(out); err != nil {
				return err
			}
		}
		if len(out) < batch {
			break
		}
	}
	if protocol != mailbusv1.Protocol_PROTOCOL_POP3 {
		return nil
	}
	return d.listTombstones(ctx, acct, batch, fn)
}

// listTombstones calls fn with batches of the UIDLs of POP3 messages
// deleted in the store (no message id).
func (d *DB) listTombstones(ctx context.Context, acct int64, batch int, fn func([]*mailbusv1.UpstreamMessage) error) error {
	after := ""
	for {
		rows, err := d.r.QueryContext(ctx, d.rebind(`SELECT uidl FROM uidl_tombstones WHERE account_id = ? AND uidl > ? ORDER BY uidl LIMIT ?`), acct, after, batch)
		if err != nil {
			return fmt.Errorf("db: list deleted uidls: %w", err)
		}
		var out []*mailbusv1.UpstreamMessage
		for rows.Next() {
			if err := rows.Scan(&after); err != nil {
				rows.Close()
				return fmt.Errorf("db: list deleted uidls: %w", err)
			}
			out = append(out, &mailbusv1.UpstreamMessage{Upstream: &mailbusv1.UpstreamId{Uidl: after}})
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("db: list deleted uidls: %w", err)
		}
		if len(out) > 0 {
			if err := fn(out); err != nil {
				return err
			}
		}
		if len(out) < batch {
			return nil
		}
	}
}

// ApplyUpstreamChanges applies changes seen upstream in one transaction.
// A change that is already true makes no event. It returns the account
// state, how many changes changed something, and the identities of the
// messages whose flag changes it did not apply because a device's change
// to them is in flight (the caller reads them again once it has settled).
func (d *DB) ApplyUpstreamChanges(ctx context.Context, accountID string, changes []*mailbusv1.UpstreamChange) (uint64, uint32, []*mailbusv1.UpstreamId, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return 0, 0, nil, err
	}
	if len(changes) > 10000 {
		return 0, 0, nil, invalid("changes", "more than 10000")
	}
	var state uint64
	var applied uint32
	var deferred []*mailbusv1.UpstreamId
	origin := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM}
	err = d.inTx(ctx, origin, func(t *tx) error {
		applied, deferred = 0, nil
		a, err := t.lock(ctx, acct)
		if err != nil {
			return err
		}
		if err := t.fence(ctx, a, d.leaseToken); err != nil {
			return err
		}
		for i, c := range changes {
			n, err := t.applyUpstream(ctx, a, accountID, c, &deferred)
			var fe *FieldError
			if errors.As(err, &fe) {
				return &FieldError{Field: fmt.Sprintf("changes[%d].%s", i, fe.Field), Reason: fe.Reason}
			}
			if err != nil {
				return fmt.Errorf("changes[%d]: %w", i, err)
			}
			applied += n
		}
		state = uint64(a.modseq)
		return nil
	})
	if err != nil {
		return 0, 0, nil, err
	}
	return state, applied, deferred, nil
}

// applyUpstream applies one upstream change; a flag change it ignores
// because the message is in flight is added to deferred.
func (t *tx) applyUpstream(ctx context.Context, a *lockedAccount, accountID string, c *mailbusv1.UpstreamChange, deferred *[]*mailbusv1.UpstreamId) (uint32, error) {
	mailboxOf := func(field, id string) (*mailbusv1.MailboxSyncState, error) {
		n, err := parseID(field, id)
		if err != nil {
			return nil, err
		}
		mb, err := t.mailboxByID(ctx, n)
		if err != nil || mb.Mailbox.AccountId != accountID {
			return nil, notFound("mailbox", id)
		}
		return mb, nil
	}
	switch ch := c.GetChange().(type) {
	case *mailbusv1.UpstreamChange_Flags:
		up := ch.Flags.GetUpstream()
		m, err := t.messageByUpstream(ctx, a.id, up)
		if err != nil || m == nil {
			return 0, err
		}
		if m.inFlight() {
			// A device change to this message is on its way upstream: the
			// caller reads the server's flags again once it has settled.
			*deferred = append(*deferred, up)
			return 0, nil
		}
		var flags []string
		for _, f := range ch.Flags.Flags {
			if c, err := mailflags.Canonical(f); err == nil {
				flags = append(flags, c)
			}
		}
		flags, _ = mailflags.Normalize(flags)
		added, removed := mailflags.Diff(m.flags, flags)
		changed, err := t.setFlags(ctx, a, m, added, removed)
		if err != nil || !changed {
			return 0, err
		}
		return 1, nil
	case *mailbusv1.UpstreamChange_Expunge:
		mb, err := mailboxOf("expunge.mailbox_id", ch.Expunge.MailboxId)
		if err != nil {
			return 0, err
		}
		var n uint32
		for _, uid := range ch.Expunge.Uids {
			m, err := t.messageByUpstream(ctx, a.id, &mailbusv1.UpstreamId{MailboxId: mb.Mailbox.Id, Uidvalidity: ch.Expunge.Uidvalidity, Uid: uid})
			if err != nil {
				return 0, err
			}
			if m == nil || m.inFlight() {
				continue
			}
			if err := t.deleteMessageRow(ctx, a.id, m.id, m.mailbox); err != nil {
				return 0, err
			}
			n++
		}
		return n, nil
	case *mailbusv1.UpstreamChange_MailboxRename:
		mb, err := mailboxOf("mailbox_rename.mailbox_id", ch.MailboxRename.MailboxId)
		if err != nil {
			return 0, err
		}
		if err := ValidateMailboxName("mailbox_rename.new_name", ch.MailboxRename.NewName); err != nil {
			return 0, err
		}
		if mb.Mailbox.Name == ch.MailboxRename.NewName {
			return 0, nil
		}
		if err := t.mailboxNameFree(ctx, a.id, ch.MailboxRename.NewName, 0); err != nil {
			return 0, err
		}
		_, err = t.renameMailbox(ctx, mb.Mailbox, ch.MailboxRename.NewName, "")
		return 1, err
	case *mailbusv1.UpstreamChange_MailboxDelete:
		mb, err := mailboxOf("mailbox_delete.mailbox_id", ch.MailboxDelete.MailboxId)
		if err != nil {
			return 0, err
		}
		if mb.Mailbox.Role == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX {
			return 0, invalid("mailbox_delete.mailbox_id", "the inbox cannot be deleted")
		}
		return 1, t.deleteMailbox(ctx, mb.Mailbox)
	default:
		return 0, invalid("change", "empty")
	}
}

// messageByUpstreamQuery finds a message by IMAP identity. "uid > 0"
// lets SQLite use the partial index messages_imap_identity (it cannot
// tell that a bound uid is positive); without it every lookup scans the
// account's messages.
const messageByUpstreamQuery = `SELECT ` + messageColumns + ` FROM messages WHERE up_mailbox_id = ? AND uidvalidity = ? AND uid = ? AND uid > 0 AND account_id = ?`

// messageByUpstream finds a message by IMAP identity; nil when none.
func (t *tx) messageByUpstream(ctx context.Context, accountID int64, up *mailbusv1.UpstreamId) (*messageRow, error) {
	mb, err := parseID("upstream.mailbox_id", up.GetMailboxId())
	if err != nil {
		return nil, err
	}
	m, err := scanMessage(t.queryRow(ctx, messageByUpstreamQuery,
		mb, int64(up.GetUidvalidity()), int64(up.GetUid()), accountID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("db: find message: %w", err)
	}
	return m, nil
}
