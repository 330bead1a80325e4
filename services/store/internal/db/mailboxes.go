package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailboxname"
)

// MaxMailboxes is the most mailboxes one account may have.
const MaxMailboxes = 10000

const mailboxColumns = `id, account_id, name, delimiter, role, local_only, modseq, uidvalidity, synced_uidnext, synced_highestmodseq, initial_sync_done, synced_lowest_uid, imap_uidvalidity, imap_uidnext`

func scanMailbox(s scanner) (*mailbusv1.MailboxSyncState, error) {
	var (
		id, account, modseq, uidvalidity, uidnext, hms, lowest int64
		imapUIDValidity, imapUIDNext                           int64
		name, delim                                            string
		role, localOnly, done                                  int
	)
	if err := s.Scan(&id, &account, &name, &delim, &role, &localOnly, &modseq, &uidvalidity, &uidnext, &hms, &done, &lowest, &imapUIDValidity, &imapUIDNext); err != nil {
		return nil, err
	}
	return &mailbusv1.MailboxSyncState{
		Mailbox: &mailbusv1.Mailbox{
			Id: formatID(id), AccountId: formatID(account), Name: name, Delimiter: delim,
			Role: mailbusv1.MailboxRole(role), LocalOnly: localOnly != 0, State: uint64(modseq),
			ImapUidvalidity: uint32(imapUIDValidity), ImapUidnext: uint32(min(imapUIDNext, maxIMAPUID)),
		},
		Uidvalidity:         uint32(uidvalidity),
		SyncedUidnext:       uint32(uidnext),
		SyncedHighestmodseq: uint64(hms),
		InitialSyncDone:     done != 0,
		SyncedLowestUid:     uint32(lowest),
	}, nil
}

// ValidateMailboxName checks a mailbox name given by a device or a server:
// its characters and its length (mailboxname.MaxLen). Its nesting depth
// depends on the delimiter: ValidateMailboxDepth.
func ValidateMailboxName(field, name string) error {
	switch {
	case name == "":
		return invalid(field, "required")
	case len(name) > mailboxname.MaxLen:
		return invalid(field, "longer than %d bytes", mailboxname.MaxLen)
	case !utf8.ValidString(name):
		return invalid(field, "not valid UTF-8")
	case strings.ContainsAny(name, "\x00\r\n*%"):
		return invalid(field, "contains a character not allowed in a mailbox name")
	}
	return nil
}

// ValidateMailboxDepth checks that a mailbox name is nested at most
// mailboxname.MaxDepth levels deep by the hierarchy delimiter delim.
func ValidateMailboxDepth(field, name, delim string) error {
	if d := mailboxname.Depth(name, delim); d > mailboxname.MaxDepth {
		return invalid(field, "nested %d levels deep by %q, more than %d", d, delim, mailboxname.MaxDepth)
	}
	return nil
}

// validateMailboxShape refuses a device's mailbox name that is not a
// proper name by the hierarchy delimiter delim (mailboxname.CheckShape):
// a trailing delimiter, an empty level, a lone delimiter, a "." or ".."
// level. A server's own names are not held to it.
func validateMailboxShape(field, name, delim string) error {
	if err := mailboxname.CheckShape(name, delim); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func isInbox(name string) bool { return strings.EqualFold(name, "INBOX") }

// createMailbox inserts a mailbox and writes its mailbox.created event.
func (t *tx) createMailbox(ctx context.Context, accountID int64, name, delim string, role mailbusv1.MailboxRole, localOnly bool) (*mailbusv1.Mailbox, error) {
	a, err := t.lock(ctx, accountID)
	if err != nil {
		return nil, err
	}
	var count int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM mailboxes WHERE account_id = ?`, accountID).Scan(&count); err != nil {
		return nil, fmt.Errorf("db: count mailboxes: %w", err)
	}
	if count >= MaxMailboxes {
		return nil, fmt.Errorf("account has %d mailboxes, the most allowed: %w", count, ErrPrecondition)
	}
	if isInbox(name) {
		name = "INBOX"
	}
	uidvalidity, err := t.nextIMAPUIDValidity(ctx)
	if err != nil {
		return nil, err
	}
	state := a.next()
	var id int64
	err = t.queryRow(ctx, `INSERT INTO mailboxes (account_id, name, delimiter, role, local_only, modseq, imap_uidvalidity, imap_uidnext) VALUES (?, ?, ?, ?, ?, ?, ?, 1) RETURNING id`,
		accountID, name, delim, int(role), boolInt(localOnly), state, uidvalidity).Scan(&id)
	if err != nil {
		return nil, fmt.Errorf("db: create mailbox: %w", err)
	}
	mb := &mailbusv1.Mailbox{Id: formatID(id), AccountId: formatID(accountID), Name: name, Delimiter: delim, Role: role, LocalOnly: localOnly, State: uint64(state),
		ImapUidvalidity: uint32(uidvalidity), ImapUidnext: 1}
	if err := t.emit(ctx, accountID, state, id, &mailbusv1.Event{Payload: &mailbusv1.Event_MailboxCreated{MailboxCreated: &mailbusv1.MailboxCreated{Mailbox: mb}}}); err != nil {
		return nil, err
	}
	return mb, nil
}

// nextIMAPUIDValidity hands out the IMAP UIDVALIDITY of a mailbox being
// created: the store clock's Unix time in seconds, or one more than the
// last one the store handed out when that is not smaller (decision 0040).
// The value comes from one store-wide row, so no two mailboxes of the
// whole store, of any account, ever get the same one: a mailbox deleted
// and created again, and a login that comes to name another account, see
// a new UIDVALIDITY, also within the same second or after the clock went
// back. The UPDATE locks the row until the commit; on PostgreSQL a
// concurrent UPDATE waits for it and then computes last+1 from the
// committed row, so READ COMMITTED never hands out one value twice.
func (t *tx) nextIMAPUIDValidity(ctx context.Context) (int64, error) {
	now := max(1, t.d.now().Unix())
	var v int64
	err := t.queryRow(ctx, `UPDATE imap_uidvalidity_floor SET last = CASE WHEN last < ? THEN ? ELSE last + 1 END WHERE id = 1 RETURNING last`,
		now, now).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("db: IMAP UIDVALIDITY: %w", err)
	}
	if v > maxIMAPUID {
		return 0, fmt.Errorf("the store has used every IMAP UIDVALIDITY: %w", ErrPrecondition)
	}
	return v, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// mailboxByID reads a mailbox inside a transaction.
func (t *tx) mailboxByID(ctx context.Context, id int64) (*mailbusv1.MailboxSyncState, error) {
	m, err := scanMailbox(t.queryRow(ctx, `SELECT `+mailboxColumns+` FROM mailboxes WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("mailbox", formatID(id))
	}
	if err != nil {
		return nil, fmt.Errorf("db: read mailbox: %w", err)
	}
	t.overlayUIDNext(m)
	return m, nil
}

// mailboxByName reads a mailbox of an account by its name inside a
// transaction; sql.ErrNoRows when there is none.
func (t *tx) mailboxByName(ctx context.Context, accountID int64, name string) (*mailbusv1.MailboxSyncState, error) {
	m, err := scanMailbox(t.queryRow(ctx, `SELECT `+mailboxColumns+` FROM mailboxes WHERE account_id = ? AND name = ?`, accountID, name))
	if err != nil {
		return nil, err
	}
	t.overlayUIDNext(m)
	return m, nil
}

// overlayUIDNext gives a mailbox read in the transaction the UIDNEXT the
// transaction has advanced it to but not yet written.
func (t *tx) overlayUIDNext(m *mailbusv1.MailboxSyncState) {
	id, err := parseID("mailbox_id", m.Mailbox.Id)
	if err != nil {
		return
	}
	if u, ok := t.uidnext[id]; ok {
		m.Mailbox.ImapUidnext = uint32(min(u.next, maxIMAPUID))
	}
}

// MailboxAccount returns the account id of a mailbox.
func (d *DB) MailboxAccount(ctx context.Context, mailboxID string) (string, error) {
	id, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return "", err
	}
	var acct int64
	err = d.r.QueryRowContext(ctx, d.rebind(`SELECT account_id FROM mailboxes WHERE id = ?`), id).Scan(&acct)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("mailbox", mailboxID)
	}
	if err != nil {
		return "", fmt.Errorf("db: mailbox: %w", err)
	}
	return formatID(acct), nil
}

// ListMailboxes returns an account's mailboxes with message counts, and the
// account state they were read at.
func (d *DB) ListMailboxes(ctx context.Context, accountID string) ([]*mailbusv1.Mailbox, uint64, error) {
	states, state, err := d.ListMailboxSyncStates(ctx, accountID)
	if err != nil {
		return nil, 0, err
	}
	n, _ := parseID("account_id", accountID)
	counts := map[string][2]uint32{}
	rows, err := d.r.QueryContext(ctx, d.rebind(`SELECT mailbox_id, COUNT(*), SUM(1 - seen) FROM messages WHERE account_id = ? GROUP BY mailbox_id`), n)
	if err != nil {
		return nil, 0, fmt.Errorf("db: count messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var mb, total, unread int64
		if err := rows.Scan(&mb, &total, &unread); err != nil {
			return nil, 0, fmt.Errorf("db: count messages: %w", err)
		}
		counts[formatID(mb)] = [2]uint32{uint32(total), uint32(unread)}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("db: count messages: %w", err)
	}
	out := make([]*mailbusv1.Mailbox, len(states))
	for i, s := range states {
		c := counts[s.Mailbox.Id]
		s.Mailbox.TotalMessages, s.Mailbox.UnreadMessages = c[0], c[1]
		out[i] = s.Mailbox
	}
	return out, state, nil
}

// ListMailboxSyncStates returns an account's mailboxes, ordered by name,
// with their sync cursors, and the account state.
func (d *DB) ListMailboxSyncStates(ctx context.Context, accountID string) ([]*mailbusv1.MailboxSyncState, uint64, error) {
	n, err := parseID("account_id", accountID)
	if err != nil {
		return nil, 0, err
	}
	// One read transaction, so that the state matches the list.
	rtx, err := d.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, 0, fmt.Errorf("db: list mailboxes: %w", err)
	}
	defer rtx.Rollback()
	var state int64
	err = rtx.QueryRowContext(ctx, d.rebind(`SELECT modseq FROM accounts WHERE id = ?`), n).Scan(&state)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, 0, notFound("account", accountID)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("db: list mailboxes: %w", err)
	}
	rows, err := rtx.QueryContext(ctx, d.rebind(`SELECT `+mailboxColumns+` FROM mailboxes WHERE account_id = ? ORDER BY name`), n)
	if err != nil {
		return nil, 0, fmt.Errorf("db: list mailboxes: %w", err)
	}
	defer rows.Close()
	var out []*mailbusv1.MailboxSyncState
	for rows.Next() {
		m, err := scanMailbox(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("db: list mailboxes: %w", err)
		}
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("db: list mailboxes: %w", err)
	}
	return out, uint64(state), nil
}

// CreateMailbox creates a mailbox for a device. On an IMAP account it is
// written back upstream; on a POP3 account it is a local-only folder.
func (d *DB) CreateMailbox(ctx context.Context, origin *mailbusv1.Origin, accountID, name string) (*mailbusv1.Mailbox, error) {
	n, err := parseID("account_id", accountID)
	if err != nil {
		return nil, err
	}
	if err := ValidateMailboxName("name", name); err != nil {
		return nil, err
	}
	var mb *mailbusv1.Mailbox
	err = d.inTx(ctx, origin, func(t *tx) error {
		a, err := t.lock(ctx, n)
		if err != nil {
			return err
		}
		if err := t.mailboxNameFree(ctx, n, name, 0); err != nil {
			return err
		}
		delim := t.accountDelimiter(ctx, n)
		if err := ValidateMailboxDepth("name", name, delim); err != nil {
			return err
		}
		if err := validateMailboxShape("name", name, delim); err != nil {
			return err
		}
		pop3 := a.protocol == mailbusv1.Protocol_PROTOCOL_POP3
		mb, err = t.createMailbox(ctx, n, name, delim, mailbusv1.MailboxRole_MAILBOX_ROLE_UNSPECIFIED, pop3)
		if err != nil {
			return err
		}
		if pop3 {
			return nil
		}
		return t.addWriteBack(ctx, n, &mailbusv1.WriteBack{Op: &mailbusv1.WriteBack_CreateMailbox{CreateMailbox: &mailbusv1.CreateMailboxWriteBack{MailboxId: mb.Id, Name: name}}})
	})
	return mb, err
}

func (t *tx) mailboxNameFree(ctx context.Context, accountID int64, name string, except int64) error {
	var n int
	if err := t.queryRow(ctx, `SELECT COUNT(*) FROM mailboxes WHERE account_id = ? AND (name = ? OR (? = 1 AND UPPER(name) = 'INBOX')) AND id <> ?`,
		accountID, name, boolInt(isInbox(name)), except).Scan(&n); err != nil {
		return fmt.Errorf("db: mailbox name: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("mailbox %q: %w", name, ErrConflict)
	}
	return nil
}

// accountDelimiter is the hierarchy delimiter the account's mailboxes use.
func (t *tx) accountDelimiter(ctx context.Context, accountID int64) string {
	var delim string
	if err := t.queryRow(ctx, `SELECT delimiter FROM mailboxes WHERE account_id = ? AND delimiter <> '' LIMIT 1`, accountID).Scan(&delim); err != nil {
		return "/"
	}
	return delim
}

// RenameMailbox renames a mailbox and its children for a device.
func (d *DB) RenameMailbox(ctx context.Context, origin *mailbusv1.Origin, mailboxID, newName string) (*mailbusv1.Mailbox, error) {
	id, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return nil, err
	}
	if err := ValidateMailboxName("new_name", newName); err != nil {
		return nil, err
	}
	var out *mailbusv1.Mailbox
	err = d.inTx(ctx, origin, func(t *tx) error {
		mb, a, err := t.lockMailbox(ctx, id)
		if err != nil {
			return err
		}
		acct := a.id
		if mb.Mailbox.Role == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX || isInbox(newName) {
			return fmt.Errorf("the inbox cannot be renamed, nor another mailbox named INBOX: %w", ErrPrecondition)
		}
		if mb.Mailbox.Name == newName {
			out = mb.Mailbox
			return nil
		}
		delim := mb.Mailbox.Delimiter
		if delim == "" {
			delim = t.accountDelimiter(ctx, acct)
		}
		if err := validateMailboxShape("new_name", newName, delim); err != nil {
			return err
		}
		if err := t.mailboxNameFree(ctx, acct, newName, id); err != nil {
			return err
		}
		if out, err = t.renameMailbox(ctx, mb.Mailbox, newName, "new_name"); err != nil {
			return err
		}
		if a.protocol == mailbusv1.Protocol_PROTOCOL_POP3 || mb.Mailbox.LocalOnly {
			return nil
		}
		return t.addWriteBack(ctx, acct, &mailbusv1.WriteBack{Op: &mailbusv1.WriteBack_RenameMailbox{RenameMailbox: &mailbusv1.RenameMailboxWriteBack{
			MailboxId: mailboxID, OldName: mb.Mailbox.Name, NewName: newName,
		}}})
	})
	return out, err
}

// renameMailbox renames mb and its children (names under "old<delim>").
// With limitField set (a device's rename), a new name of mb or of a child
// longer or deeper than the mailboxname limits is refused as that field;
// without (the server's rename), the store follows the server.
func (t *tx) renameMailbox(ctx context.Context, mb *mailbusv1.Mailbox, newName, limitField string) (*mailbusv1.Mailbox, error) {
	acct, _ := parseID("account_id", mb.AccountId)
	a, err := t.lock(ctx, acct)
	if err != nil {
		return nil, err
	}
	type rename struct {
		id       int64
		old, new string
	}
	id, _ := parseID("mailbox_id", mb.Id)
	renames := []rename{{id, mb.Name, newName}}
	if mb.Delimiter != "" {
		prefix := mb.Name + mb.Delimiter
		rows, err := t.query(ctx, `SELECT id, name FROM mailboxes WHERE account_id = ? AND id <> ?`, acct, id)
		if err != nil {
			return nil, fmt.Errorf("db: rename mailbox: %w", err)
		}
		for rows.Next() {
			var cid int64
			var cname string
			if err := rows.Scan(&cid, &cname); err != nil {
				rows.Close()
				return nil, fmt.Errorf("db: rename mailbox: %w", err)
			}
			if strings.HasPrefix(cname, prefix) {
				renames = append(renames, rename{cid, cname, newName + mb.Delimiter + strings.TrimPrefix(cname, prefix)})
			}
		}
		rows.Close()
	}
	if limitField != "" {
		for i, r := range renames {
			err := mailboxname.CheckLimits(r.new, mb.Delimiter)
			switch {
			case err != nil && i == 0:
				return nil, invalid(limitField, "%v", err)
			case err != nil:
				return nil, invalid(limitField, "child mailbox %q would be renamed %q: %v", r.old, r.new, err)
			}
		}
	}
	// Every new name must be free among the mailboxes not being renamed.
	renamed := map[int64]bool{}
	for _, r := range renames {
		renamed[r.id] = true
	}
	for _, r := range renames[1:] {
		var other int64
		err := t.queryRow(ctx, `SELECT id FROM mailboxes WHERE account_id = ? AND name = ?`, acct, r.new).Scan(&other)
		if err == nil && !renamed[other] {
			return nil, fmt.Errorf("mailbox %q (renaming %q): %w", r.new, r.old, ErrConflict)
		}
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("db: rename mailbox: %w", err)
		}
	}
	var out *mailbusv1.Mailbox
	for _, r := range renames {
		state := a.next()
		if _, err := t.exec(ctx, `UPDATE mailboxes SET name = ?, modseq = ? WHERE id = ?`, r.new, state, r.id); err != nil {
			return nil, fmt.Errorf("db: rename mailbox: %w", err)
		}
		m, err := t.mailboxByID(ctx, r.id)
		if err != nil {
			return nil, err
		}
		if err := t.emit(ctx, acct, state, r.id, &mailbusv1.Event{Payload: &mailbusv1.Event_MailboxUpdated{MailboxUpdated: &mailbusv1.MailboxUpdated{Mailbox: m.Mailbox, PreviousName: r.old}}}); err != nil {
			return nil, err
		}
		if out == nil {
			out = m.Mailbox
		}
	}
	return out, nil
}

// DeleteMailbox deletes a mailbox and its messages for a device.
func (d *DB) DeleteMailbox(ctx context.Context, origin *mailbusv1.Origin, mailboxID string) error {
	id, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return err
	}
	return d.inTx(ctx, origin, func(t *tx) error {
		mb, a, err := t.lockMailbox(ctx, id)
		if err != nil {
			return err
		}
		if mb.Mailbox.Role == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX {
			return fmt.Errorf("the inbox cannot be deleted: %w", ErrPrecondition)
		}
		acct := a.id
		if err := t.deleteMailbox(ctx, mb.Mailbox); err != nil {
			return err
		}
		if a.protocol == mailbusv1.Protocol_PROTOCOL_POP3 || mb.Mailbox.LocalOnly {
			return nil
		}
		return t.addWriteBack(ctx, acct, &mailbusv1.WriteBack{Op: &mailbusv1.WriteBack_DeleteMailbox{DeleteMailbox: &mailbusv1.DeleteMailboxWriteBack{MailboxId: mailboxID, Name: mb.Mailbox.Name}}})
	})
}

// deleteMailbox deletes a mailbox with a message.deleted event for each of
// its messages and a mailbox.deleted event.
func (t *tx) deleteMailbox(ctx context.Context, mb *mailbusv1.Mailbox) error {
	acct, _ := parseID("account_id", mb.AccountId)
	id, _ := parseID("mailbox_id", mb.Id)
	a, err := t.lock(ctx, acct)
	if err != nil {
		return err
	}
	rows, err := t.query(ctx, `SELECT `+messageColumns+` FROM messages WHERE mailbox_id = ? ORDER BY id`, id)
	if err != nil {
		return fmt.Errorf("db: delete mailbox: %w", err)
	}
	var msgs []*messageRow
	for rows.Next() {
		m, err := scanMessage(rows)
		if err != nil {
			rows.Close()
			return fmt.Errorf("db: delete mailbox: %w", err)
		}
		msgs = append(msgs, m)
	}
	rows.Close()
	for _, m := range msgs {
		// A message moved in by a device whose move has not reached the
		// server is still upstream in its old mailbox: it goes back there
		// rather than being lost with this one.
		if m.upMailbox != 0 && m.upMailbox != id {
			if _, err := t.mailboxByID(ctx, m.upMailbox); err == nil {
				if err := t.moveMessage(ctx, a, m, m.upMailbox); err != nil {
					return err
				}
				continue
			}
		}
		if err := t.deleteMessageRow(ctx, acct, m.id, id); err != nil {
			return err
		}
	}
	if _, err := t.exec(ctx, `DELETE FROM mailboxes WHERE id = ?`, id); err != nil {
		return fmt.Errorf("db: delete mailbox: %w", err)
	}
	state := a.next()
	return t.emit(ctx, acct, state, id, &mailbusv1.Event{Mailbox: mailboxRefOf(mb), Payload: &mailbusv1.Event_MailboxDeleted{MailboxDeleted: &mailbusv1.MailboxDeleted{MailboxId: mb.Id, Name: mb.Name}}})
}

// UpsertMailboxes declares upstream mailboxes: missing ones are created,
// changed delimiter or role updated. It returns them with sync states.
func (d *DB) UpsertMailboxes(ctx context.Context, accountID string, mbs []*mailbusv1.UpstreamMailbox) ([]*mailbusv1.MailboxSyncState, error) {
	n, err := parseID("account_id", accountID)
	if err != nil {
		return nil, err
	}
	if len(mbs) > MaxMailboxes {
		return nil, invalid("mailboxes", "more than %d", MaxMailboxes)
	}
	for i, m := range mbs {
		field := fmt.Sprintf("mailboxes[%d].name", i)
		if err := ValidateMailboxName(field, m.GetName()); err != nil {
			return nil, err
		}
		if err := ValidateMailboxDepth(field, m.GetName(), m.GetDelimiter()); err != nil {
			return nil, err
		}
	}
	var out []*mailbusv1.MailboxSyncState
	err = d.inTx(ctx, &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM}, func(t *tx) error {
		out = make([]*mailbusv1.MailboxSyncState, len(mbs))
		a, err := t.lock(ctx, n)
		if err != nil {
			return err
		}
		if err := t.fence(ctx, a, d.leaseToken); err != nil {
			return err
		}
		leaving, err := t.namesLeavingUpstream(ctx, n)
		if err != nil {
			return err
		}
		for i, up := range mbs {
			name := up.Name
			if isInbox(name) {
				name = "INBOX"
			}
			role := up.Role
			if name == "INBOX" {
				role = mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX
			}
			cur, err := t.mailboxByName(ctx, n, name)
			switch {
			case errors.Is(err, sql.ErrNoRows) && leaving[name]:
				// A device renamed or deleted this folder; the write-back
				// has not reached the server yet. Not a new folder.
				continue
			case errors.Is(err, sql.ErrNoRows):
				mb, err := t.createMailbox(ctx, n, name, up.Delimiter, role, false)
				if err != nil {
					return err
				}
				id, _ := parseID("mailbox_id", mb.Id)
				if up.Uidvalidity != 0 {
					if _, err := t.exec(ctx, `UPDATE mailboxes SET uidvalidity = ? WHERE id = ?`, int64(up.Uidvalidity), id); err != nil {
						return fmt.Errorf("db: upsert mailbox: %w", err)
					}
				}
				if out[i], err = t.mailboxByID(ctx, id); err != nil {
					return err
				}
			case err != nil:
				return fmt.Errorf("db: upsert mailbox: %w", err)
			default:
				if cur.Mailbox.Delimiter != up.Delimiter || cur.Mailbox.Role != role || cur.Mailbox.LocalOnly {
					state := a.next()
					id, _ := parseID("mailbox_id", cur.Mailbox.Id)
					if _, err := t.exec(ctx, `UPDATE mailboxes SET delimiter = ?, role = ?, local_only = 0, modseq = ? WHERE id = ?`, up.Delimiter, int(role), state, id); err != nil {
						return fmt.Errorf("db: upsert mailbox: %w", err)
					}
					if cur, err = t.mailboxByID(ctx, id); err != nil {
						return err
					}
					if err := t.emit(ctx, n, state, id, &mailbusv1.Event{Payload: &mailbusv1.Event_MailboxUpdated{MailboxUpdated: &mailbusv1.MailboxUpdated{Mailbox: cur.Mailbox}}}); err != nil {
						return err
					}
				}
				out[i] = cur
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	kept := out[:0]
	for _, m := range out {
		if m != nil {
			kept = append(kept, m)
		}
	}
	return kept, nil
}

// namesLeavingUpstream are the folder names that pending device renames
// (old names) and deletions will remove from the server.
func (t *tx) namesLeavingUpstream(ctx context.Context, accountID int64) (map[string]bool, error) {
	rows, err := t.query(ctx, `SELECT op FROM writebacks WHERE account_id = ? AND status = 0`, accountID)
	if err != nil {
		return nil, fmt.Errorf("db: pending folder write-backs: %w", err)
	}
	defer rows.Close()
	names := map[string]bool{}
	for rows.Next() {
		var op []byte
		if err := rows.Scan(&op); err != nil {
			return nil, fmt.Errorf("db: pending folder write-backs: %w", err)
		}
		wb := &mailbusv1.WriteBack{}
		if err := proto.Unmarshal(op, wb); err != nil {
			return nil, fmt.Errorf("db: pending folder write-backs: %w", err)
		}
		if r := wb.GetRenameMailbox(); r != nil {
			names[r.OldName] = true
		}
		if d := wb.GetDeleteMailbox(); d != nil {
			names[d.Name] = true
		}
	}
	return names, rows.Err()
}

// SetMailboxSyncState records a fetcher's sync cursor for a mailbox.
func (d *DB) SetMailboxSyncState(ctx context.Context, mailboxID string, s *mailbusv1.MailboxSyncState) error {
	id, err := parseID("mailbox_id", mailboxID)
	if err != nil {
		return err
	}
	if s == nil {
		return invalid("state", "required")
	}
	return d.inTx(ctx, nil, func(t *tx) error {
		_, a, err := t.lockMailbox(ctx, id)
		if err != nil {
			return err
		}
		if err := t.fence(ctx, a, d.leaseToken); err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE mailboxes SET uidvalidity = ?, synced_uidnext = ?, synced_highestmodseq = ?, initial_sync_done = ?, synced_lowest_uid = ? WHERE id = ?`,
			int64(s.Uidvalidity), int64(s.SyncedUidnext), int64(s.SyncedHighestmodseq), boolInt(s.InitialSyncDone), int64(s.SyncedLowestUid), id); err != nil {
			return fmt.Errorf("db: set sync state: %w", err)
		}
		return nil
	})
}
