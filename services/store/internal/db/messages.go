package db

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailflags"
)

// MaxBatch is the most message ids one request may name.
const MaxBatch = 1000

const messageColumns = `id, account_id, mailbox_id, up_mailbox_id, uidvalidity, uid, uidl, blob_hash, size, flags, internal_date, summary, modseq, pending_writebacks, awaiting_placement, imap_uid`

// messageRow is a message as stored.
type messageRow struct {
	id, account, mailbox, upMailbox int64
	uidvalidity, uid                int64
	uidl                            sql.NullString
	hash                            string
	size                            int64
	flags                           []string
	internalDate                    int64
	summary                         []byte
	modseq                          int64
	pending                         int64
	awaiting                        int64
	// imapUID is the message's UID in its mailbox as the store's IMAP
	// gateway serves it (decision 0040); not the upstream uid.
	imapUID int64
}

// inFlight reports whether a device change to the message has not yet
// fully reached the server: upstream flags and expunges of it are then
// not applied (decision 0004).
func (m *messageRow) inFlight() bool { return m.pending > 0 || m.awaiting > 0 }

func scanMessage(s scanner) (*messageRow, error) {
	m := &messageRow{}
	var flags string
	if err := s.Scan(&m.id, &m.account, &m.mailbox, &m.upMailbox, &m.uidvalidity, &m.uid, &m.uidl, &m.hash, &m.size, &flags, &m.internalDate, &m.summary, &m.modseq, &m.pending, &m.awaiting, &m.imapUID); err != nil {
		return nil, err
	}
	m.flags = mailflags.Split(flags)
	return m, nil
}

// toSummary builds the API view of a stored message.
func (m *messageRow) toSummary() (*mailbusv1.MessageSummary, error) {
	s := &mailbusv1.MessageSummary{}
	if err := proto.Unmarshal(m.summary, s); err != nil {
		return nil, fmt.Errorf("db: message %d summary: %w", m.id, err)
	}
	s.Id, s.AccountId, s.MailboxId = formatID(m.id), formatID(m.account), formatID(m.mailbox)
	s.Flags = m.flags
	s.Size = uint64(m.size)
	s.InternalDate = timestamppb.New(time.UnixMicro(m.internalDate))
	s.ContentHash = m.hash
	s.State = uint64(m.modseq)
	s.ImapUid = uint32(m.imapUID)
	return s, nil
}

// toMarshalledSummary is the API view of a stored message for an event
// that is only marshalled (emit): the row's columns as fields, and the
// summary column (envelope, has_attachments, preview, as prepare
// marshalled them) as the message's unknown fields, which proto.Marshal
// writes out as they are. A reader decodes the same summary as
// toSummary's; the store marshals the summary once per message instead of
// unmarshalling it and marshalling it again (issue 11). Its Envelope,
// HasAttachments and Preview read as empty: use toSummary for a summary
// to read or to encode as JSON.
func (m *messageRow) toMarshalledSummary() *mailbusv1.MessageSummary {
	s := &mailbusv1.MessageSummary{
		Id: formatID(m.id), AccountId: formatID(m.account), MailboxId: formatID(m.mailbox),
		Flags: m.flags, Size: uint64(m.size), InternalDate: timestamppb.New(time.UnixMicro(m.internalDate)),
		ContentHash: m.hash, State: uint64(m.modseq), ImapUid: uint32(m.imapUID),
	}
	s.ProtoReflect().SetUnknown(m.summary)
	return s
}

// upstream is the message's upstream identity.
func (m *messageRow) upstream() *mailbusv1.UpstreamId {
	u := &mailbusv1.UpstreamId{Uidvalidity: uint32(m.uidvalidity), Uid: uint32(m.uid), Uidl: m.uidl.String}
	if m.upMailbox != 0 {
		u.MailboxId = formatID(m.upMailbox)
	}
	return u
}

func (t *tx) messageByID(ctx context.Context, id int64) (*messageRow, error) {
	m, err := scanMessage(t.queryRow(ctx, `SELECT `+messageColumns+` FROM messages WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("message", formatID(id))
	}
	if err != nil {
		return nil, fmt.Errorf("db: read message: %w", err)
	}
	return m, nil
}

// GetMessageSummary returns a message's summary.
func (d *DB) GetMessageSummary(ctx context.Context, messageID string) (*mailbusv1.MessageSummary, error) {
	id, err := parseID("message_id", messageID)
	if err != nil {
		return nil, err
	}
	m, err := scanMessage(d.r.QueryRowContext(ctx, d.rebind(`SELECT `+messageColumns+` FROM messages WHERE id = ?`), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("message", messageID)
	}
	if err != nil {
		return nil, fmt.Errorf("db: read message: %w", err)
	}
	return m.toSummary()
}

// RawMessage returns a message's raw bytes and summary.
func (d *DB) RawMessage(ctx context.Context, messageID string) ([]byte, *mailbusv1.MessageSummary, error) {
	s, err := d.GetMessageSummary(ctx, messageID)
	if err != nil {
		return nil, nil, err
	}
	return d.rawMessageOf(ctx, messageID, s)
}

// rawMessageOf reads the body of the message whose summary s was read.
// The message may have been deleted since, and its blob collected; that
// is ErrNotFound, as if it had been gone before.
func (d *DB) rawMessageOf(ctx context.Context, messageID string, s *mailbusv1.MessageSummary) ([]byte, *mailbusv1.MessageSummary, error) {
	data, err := d.readBlob(ctx, s.ContentHash)
	if err == nil {
		return data, s, nil
	}
	if ctx.Err() != nil {
		return nil, nil, fmt.Errorf("db: read blob of message %s: %w", messageID, err)
	}
	if _, gerr := d.GetMessageSummary(ctx, messageID); errors.Is(gerr, ErrNotFound) {
		return nil, nil, gerr
	}
	// A message row always has its blob (foreign key) and a blob kept as
	// a file its file (decision 0014); a missing one is corruption, not a
	// user error.
	return nil, nil, fmt.Errorf("db: read blob of message %s: %w", messageID, err)
}

// readBlob returns a blob's bytes, from its row or its file.
func (d *DB) readBlob(ctx context.Context, hash string) ([]byte, error) {
	var (
		data   []byte
		inFile bool
		size   int64
	)
	err := d.r.QueryRowContext(ctx, d.rebind(`SELECT data, in_file, size FROM blobs WHERE hash = ?`), hash).Scan(&data, &inFile, &size)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, errors.New("no blob row")
	case err != nil:
		return nil, err
	case !inFile:
		return data, nil
	case d.files == nil:
		return nil, errors.New("kept as a file, and this database has no blob directory")
	}
	return d.files.read(hash, size)
}

// ListMessages returns up to limit messages of a mailbox, newest first,
// after the page token, the next token, and the account state.
func (d *DB) ListMessages(ctx context.Context, mailboxID string, limit int, pageToken string) ([]*mailbusv1.MessageSummary, string, uint64, error) {
	mb, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return nil, "", 0, err
	}
	afterDate, afterID := int64(1<<62), int64(1<<62)
	if pageToken != "" {
		if afterDate, afterID, err = decodePageToken(pageToken); err != nil {
			return nil, "", 0, err
		}
	}
	return d.listMessages(ctx, mailboxID, limit,
		`SELECT `+messageColumns+` FROM messages WHERE mailbox_id = ? AND (internal_date < ? OR (internal_date = ? AND id < ?)) ORDER BY internal_date DESC, id DESC LIMIT ?`,
		[]any{mb, afterDate, afterDate, afterID, limit + 1},
		func(last *messageRow) string { return encodePageToken(last.internalDate, last.id) })
}

// ListMessagesByIMAPUID returns up to limit messages of a mailbox in
// ascending IMAP UID order, from minUID (0 is from the first) and after
// the page token, the next token, and the account state. Its page tokens
// are its own: one of ListMessages is malformed here, and the reverse.
func (d *DB) ListMessagesByIMAPUID(ctx context.Context, mailboxID string, minUID uint32, limit int, pageToken string) ([]*mailbusv1.MessageSummary, string, uint64, error) {
	mb, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return nil, "", 0, err
	}
	from := int64(minUID)
	if pageToken != "" {
		after, err := decodeUIDPageToken(pageToken)
		if err != nil {
			return nil, "", 0, err
		}
		from = max(from, after+1)
	}
	return d.listMessages(ctx, mailboxID, limit, listByIMAPUIDQuery, []any{mb, from, limit + 1},
		func(last *messageRow) string { return encodeUIDPageToken(last.imapUID) })
}

// listByIMAPUIDQuery lists a mailbox's messages from a UID on: the index
// messages_by_imap_uid (mailbox_id, imap_uid) answers it in order.
const listByIMAPUIDQuery = `SELECT ` + messageColumns + ` FROM messages WHERE mailbox_id = ? AND imap_uid >= ? ORDER BY imap_uid LIMIT ?`

// listMessages runs a message list query of one mailbox whose last
// argument is limit+1, in one read transaction with the account state;
// tokenAfter makes the next page's token from the last message listed.
func (d *DB) listMessages(ctx context.Context, mailboxID string, limit int, q string, args []any, tokenAfter func(*messageRow) string) ([]*mailbusv1.MessageSummary, string, uint64, error) {
	mb := args[0]
	rtx, err := d.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, "", 0, fmt.Errorf("db: list messages: %w", err)
	}
	defer rtx.Rollback()
	var state int64
	err = rtx.QueryRowContext(ctx, d.rebind(`SELECT a.modseq FROM mailboxes m JOIN accounts a ON a.id = m.account_id WHERE m.id = ?`), mb).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, "", 0, notFound("mailbox", mailboxID)
	}
	if err != nil {
		return nil, "", 0, fmt.Errorf("db: list messages: %w", err)
	}
	rows, err := rtx.QueryContext(ctx, d.rebind(q), args...)
	if err != nil {
		return nil, "", 0, fmt.Errorf("db: list messages: %w", err)
	}
	defer rows.Close()
	var out []*mailbusv1.MessageSummary
	var last *messageRow
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			return nil, "", 0, fmt.Errorf("db: list messages: %w", err)
		}
		if len(out) == limit {
			return out, tokenAfter(last), uint64(state), nil
		}
		s, err := m.toSummary()
		if err != nil {
			return nil, "", 0, err
		}
		out = append(out, s)
		last = m
	}
	if err := rows.Err(); err != nil {
		return nil, "", 0, fmt.Errorf("db: list messages: %w", err)
	}
	return out, "", uint64(state), nil
}

// uidTokenPrefix marks a page token of ListMessagesByIMAPUID.
const uidTokenPrefix = "uid:"

func encodeUIDPageToken(uid int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(uidTokenPrefix + strconv.FormatInt(uid, 10)))
}

func decodeUIDPageToken(tok string) (int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, invalid("page_token", "malformed")
	}
	rest, ok := strings.CutPrefix(string(b), uidTokenPrefix)
	uid, err := strconv.ParseInt(rest, 10, 64)
	if !ok || err != nil || uid < 0 || uid > maxIMAPUID {
		return 0, invalid("page_token", "malformed (not a page token of the IMAP UID order)")
	}
	return uid, nil
}

func encodePageToken(date, id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(fmt.Sprintf("%d.%d", date, id)))
}

func decodePageToken(tok string) (int64, int64, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return 0, 0, invalid("page_token", "malformed")
	}
	date, id, ok := strings.Cut(string(b), ".")
	d, err1 := strconv.ParseInt(date, 10, 64)
	n, err2 := strconv.ParseInt(id, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, invalid("page_token", "malformed")
	}
	return d, n, nil
}

// messagesOf parses and checks ids of one account and returns their rows
// in request order (inside the transaction, after the account is locked).
func (t *tx) messagesOf(ctx context.Context, accountID int64, ids []string) ([]*messageRow, error) {
	if len(ids) == 0 {
		return nil, invalid("message_ids", "required")
	}
	if len(ids) > MaxBatch {
		return nil, invalid("message_ids", "more than %d", MaxBatch)
	}
	out := make([]*messageRow, 0, len(ids))
	seen := map[int64]bool{}
	for i, s := range ids {
		id, err := parseID(fmt.Sprintf("message_ids[%d]", i), s)
		if err != nil {
			return nil, err
		}
		if seen[id] {
			continue
		}
		seen[id] = true
		m, err := t.messageByID(ctx, id)
		if err != nil {
			return nil, err
		}
		if m.account != accountID {
			// Another account's message is reported as missing: no leak of
			// its existence.
			return nil, notFound("message", formatID(id))
		}
		out = append(out, m)
	}
	return out, nil
}

// target is the write-back target of a message.
func (t *tx) target(ctx context.Context, m *messageRow) *mailbusv1.WriteBackTarget {
	tg := &mailbusv1.WriteBackTarget{MessageId: formatID(m.id), Upstream: m.upstream()}
	if m.upMailbox != 0 {
		if mb, err := t.mailboxByID(ctx, m.upMailbox); err == nil {
			tg.MailboxName = mb.Mailbox.Name
		}
	}
	return tg
}

// UpdateFlags adds and removes flags on messages of one account for a
// device.
func (d *DB) UpdateFlags(ctx context.Context, origin *mailbusv1.Origin, accountID string, ids, add, remove []string) ([]*mailbusv1.MessageSummary, uint64, error) {
	out, _, state, err := d.updateFlags(ctx, origin, accountID, ids, add, remove, nil)
	return out, state, err
}

// UpdateFlagsUnchangedSince is UpdateFlags on the messages whose state is
// at most unchangedSince (IMAP's STORE UNCHANGEDSINCE, RFC 7162 section
// 3.1.3). The others are left as they are, without event or write-back,
// and their ids returned as modified, in request order. The states are
// compared under the account lock, in the change's transaction: a
// concurrent change of a message is either seen by the comparison or
// made after this change.
func (d *DB) UpdateFlagsUnchangedSince(ctx context.Context, origin *mailbusv1.Origin, accountID string, ids, add, remove []string, unchangedSince uint64) (changed []*mailbusv1.MessageSummary, modified []string, state uint64, err error) {
	return d.updateFlags(ctx, origin, accountID, ids, add, remove, &unchangedSince)
}

// updateFlags is UpdateFlags, conditional on the messages' states when
// unchangedSince is not nil.
func (d *DB) updateFlags(ctx context.Context, origin *mailbusv1.Origin, accountID string, ids, add, remove []string, unchangedSince *uint64) ([]*mailbusv1.MessageSummary, []string, uint64, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return nil, nil, 0, err
	}
	if add, err = normalizeFlags("add", add); err != nil {
		return nil, nil, 0, err
	}
	if remove, err = normalizeFlags("remove", remove); err != nil {
		return nil, nil, 0, err
	}
	if len(add)+len(remove) == 0 {
		return nil, nil, 0, invalid("add", "no flag to add or remove")
	}
	for _, f := range add {
		if mailflags.Contains(remove, f) {
			return nil, nil, 0, invalid("remove", "flag %q is both added and removed", f)
		}
	}
	var out []*mailbusv1.MessageSummary
	var modified []string
	var state uint64
	err = d.inTx(ctx, origin, func(t *tx) error {
		out, modified = nil, nil
		a, err := t.lock(ctx, acct)
		if err != nil {
			return err
		}
		msgs, err := t.messagesOf(ctx, acct, ids)
		if err != nil {
			return err
		}
		var targets []*mailbusv1.WriteBackTarget
		for _, m := range msgs {
			if unchangedSince != nil && uint64(m.modseq) > *unchangedSince {
				modified = append(modified, formatID(m.id))
				continue
			}
			changed, err := t.setFlags(ctx, a, m, add, remove)
			if err != nil {
				return err
			}
			if changed && a.protocol == mailbusv1.Protocol_PROTOCOL_IMAP {
				targets = append(targets, t.target(ctx, m))
			}
			s, err := m.toSummary()
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		state = uint64(a.modseq)
		if len(targets) == 0 {
			return nil
		}
		return t.addWriteBack(ctx, acct, &mailbusv1.WriteBack{Op: &mailbusv1.WriteBack_Flags{Flags: &mailbusv1.FlagsWriteBack{Targets: targets, Add: add, Remove: remove}}})
	})
	return out, modified, state, err
}

func normalizeFlags(field string, flags []string) ([]string, error) {
	if len(flags) > 100 {
		return nil, invalid(field, "more than 100 flags")
	}
	n, err := mailflags.Normalize(flags)
	if err != nil {
		return nil, invalid(field, "%v", err)
	}
	return n, nil
}

// setFlags applies add/remove to one message, with a message.updated event
// when something changed. m is updated in place.
func (t *tx) setFlags(ctx context.Context, a *lockedAccount, m *messageRow, add, remove []string) (bool, error) {
	flags, added, removed := mailflags.Apply(m.flags, add, remove)
	if len(added)+len(removed) == 0 {
		return false, nil
	}
	state := a.next()
	seen := boolInt(mailflags.Contains(flags, mailflags.Seen))
	if _, err := t.exec(ctx, `UPDATE messages SET flags = ?, seen = ?, modseq = ? WHERE id = ?`, mailflags.Join(flags), seen, state, m.id); err != nil {
		return false, fmt.Errorf("db: update flags: %w", err)
	}
	m.flags, m.modseq = flags, state
	s, err := m.toSummary()
	if err != nil {
		return false, err
	}
	return true, t.emit(ctx, a.id, state, m.id, &mailbusv1.Event{Payload: &mailbusv1.Event_MessageUpdated{MessageUpdated: &mailbusv1.MessageUpdated{
		Message: s, FlagsAdded: added, FlagsRemoved: removed,
	}}})
}

// MoveMessages moves messages to another mailbox of the same account for a
// device.
func (d *DB) MoveMessages(ctx context.Context, origin *mailbusv1.Origin, accountID string, ids []string, toMailboxID string) ([]*mailbusv1.MessageSummary, uint64, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return nil, 0, err
	}
	to, err := parseID("to_mailbox_id", toMailboxID)
	if err != nil {
		return nil, 0, err
	}
	var out []*mailbusv1.MessageSummary
	var state uint64
	err = d.inTx(ctx, origin, func(t *tx) error {
		out = nil
		a, err := t.lock(ctx, acct)
		if err != nil {
			return err
		}
		dest, err := t.mailboxByID(ctx, to)
		if err != nil || dest.Mailbox.AccountId != accountID {
			return notFound("mailbox", toMailboxID)
		}
		msgs, err := t.messagesOf(ctx, acct, ids)
		if err != nil {
			return err
		}
		imap := a.protocol == mailbusv1.Protocol_PROTOCOL_IMAP
		var targets []*mailbusv1.WriteBackTarget
		for _, m := range msgs {
			if m.mailbox != to {
				if imap {
					targets = append(targets, t.target(ctx, m))
				}
				if err := t.moveMessage(ctx, a, m, to); err != nil {
					return err
				}
			}
			s, err := m.toSummary()
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		state = uint64(a.modseq)
		if len(targets) == 0 {
			return nil
		}
		return t.addWriteBack(ctx, acct, &mailbusv1.WriteBack{Op: &mailbusv1.WriteBack_Move{Move: &mailbusv1.MoveWriteBack{
			Targets: targets, ToMailboxId: toMailboxID, ToMailboxName: dest.Mailbox.Name,
		}}})
	})
	return out, state, err
}

// moveMessage sets a message's mailbox with a message.updated event. The
// message gets a new IMAP UID in the destination (decision 0040). The
// upstream identity stays until the write-back reports the new one.
func (t *tx) moveMessage(ctx context.Context, a *lockedAccount, m *messageRow, to int64) error {
	from, fromUID := m.mailbox, m.imapUID
	uid, err := t.nextIMAPUID(ctx, to)
	if err != nil {
		return err
	}
	state := a.next()
	if _, err := t.exec(ctx, `UPDATE messages SET mailbox_id = ?, imap_uid = ?, modseq = ? WHERE id = ?`, to, uid, state, m.id); err != nil {
		return fmt.Errorf("db: move message: %w", err)
	}
	m.mailbox, m.imapUID, m.modseq = to, uid, state
	s, err := m.toSummary()
	if err != nil {
		return err
	}
	return t.emit(ctx, a.id, state, m.id, &mailbusv1.Event{Payload: &mailbusv1.Event_MessageUpdated{MessageUpdated: &mailbusv1.MessageUpdated{
		Message: s, PreviousMailboxId: formatID(from), PreviousImapUid: uint32(fromUID),
	}}})
}

// DeleteMessages deletes messages of one account for a device.
func (d *DB) DeleteMessages(ctx context.Context, origin *mailbusv1.Origin, accountID string, ids []string) (uint64, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return 0, err
	}
	var state uint64
	err = d.inTx(ctx, origin, func(t *tx) error {
		a, err := t.lock(ctx, acct)
		if err != nil {
			return err
		}
		msgs, err := t.messagesOf(ctx, acct, ids)
		if err != nil {
			return err
		}
		var targets []*mailbusv1.WriteBackTarget
		for _, m := range msgs {
			// On IMAP every message is a target, also one whose append
			// has not reached the server yet: the append's placement fills
			// in its identity before imapsync gets to the delete.
			if a.protocol == mailbusv1.Protocol_PROTOCOL_IMAP && (m.uid > 0 || m.inFlight()) {
				targets = append(targets, t.target(ctx, m))
			}
			if err := t.deleteMessageRow(ctx, acct, m.id, m.mailbox); err != nil {
				return err
			}
		}
		state = uint64(a.modseq)
		if len(targets) == 0 {
			return nil
		}
		return t.addWriteBack(ctx, acct, &mailbusv1.WriteBack{Op: &mailbusv1.WriteBack_Delete{Delete: &mailbusv1.DeleteWriteBack{Targets: targets}}})
	})
	return state, err
}

// deleteMessageRow deletes one message with a message.deleted event. Its
// blob stays until the retention pass collects unreferenced blobs.
func (t *tx) deleteMessageRow(ctx context.Context, accountID, messageID, mailboxID int64) error {
	a, err := t.lock(ctx, accountID)
	if err != nil {
		return err
	}
	// A POP3 message keeps its UIDL as a tombstone: the server (keep
	// mode) still has it, and it must not come back.
	if _, err := t.exec(ctx, `INSERT INTO uidl_tombstones (account_id, uidl, deleted_at) SELECT account_id, uidl, ? FROM messages WHERE id = ? AND uidl IS NOT NULL ON CONFLICT (account_id, uidl) DO NOTHING`, t.d.nowMicros(), messageID); err != nil {
		return fmt.Errorf("db: delete message: %w", err)
	}
	// The event carries the UID the message had, so that an IMAP client
	// can be told which UID was expunged.
	var uid int64
	if err := t.queryRow(ctx, `DELETE FROM messages WHERE id = ? RETURNING imap_uid`, messageID).Scan(&uid); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("db: delete message: %w", err)
	}
	state := a.next()
	return t.emit(ctx, accountID, state, messageID, &mailbusv1.Event{Payload: &mailbusv1.Event_MessageDeleted{MessageDeleted: &mailbusv1.MessageDeleted{
		MessageId: formatID(messageID), MailboxId: formatID(mailboxID), ImapUid: uint32(uid),
	}}})
}
