package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Write-back statuses.
const (
	wbPending = 0
	wbApplied = 1
	wbFailed  = 2
)

// addWriteBack records a device change for imapsync. Messages a flags or
// move write-back targets are marked pending, so that upstream flags and
// expunges seen meanwhile do not undo the device's change before it has
// reached the server.
func (t *tx) addWriteBack(ctx context.Context, accountID int64, wb *mailbusv1.WriteBack) error {
	device := t.origin.GetDeviceId()
	wb.DeviceId = device
	op, err := proto.Marshal(wb)
	if err != nil {
		return fmt.Errorf("db: write-back: %w", err)
	}
	now := t.d.nowMicros()
	if _, err := t.exec(ctx, `INSERT INTO writebacks (account_id, device_id, op, status, created_at, updated_at) VALUES (?, ?, ?, 0, ?, ?)`,
		accountID, device, op, now, now); err != nil {
		return fmt.Errorf("db: write-back: %w", err)
	}
	return t.adjustPending(ctx, wb, +1)
}

// pendingTargets are the messages whose pending count a write-back holds.
func pendingTargets(wb *mailbusv1.WriteBack) []*mailbusv1.WriteBackTarget {
	switch op := wb.Op.(type) {
	case *mailbusv1.WriteBack_Flags:
		return op.Flags.Targets
	case *mailbusv1.WriteBack_Move:
		return op.Move.Targets
	case *mailbusv1.WriteBack_Append:
		return []*mailbusv1.WriteBackTarget{{MessageId: op.Append.MessageId}}
	}
	return nil
}

func (t *tx) adjustPending(ctx context.Context, wb *mailbusv1.WriteBack, delta int) error {
	for _, tg := range pendingTargets(wb) {
		id, err := parseID("message_id", tg.MessageId)
		if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE messages SET pending_writebacks = CASE WHEN pending_writebacks + ? < 0 THEN 0 ELSE pending_writebacks + ? END WHERE id = ?`, delta, delta, id); err != nil {
			return fmt.Errorf("db: write-back pending count: %w", err)
		}
	}
	return nil
}

// ListPendingWriteBacks returns up to limit pending write-backs of an
// account, oldest first.
func (d *DB) ListPendingWriteBacks(ctx context.Context, accountID string, limit int) ([]*mailbusv1.WriteBack, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return nil, err
	}
	if _, err := d.accountProtocol(ctx, acct); err != nil {
		return nil, err
	}
	rows, err := d.r.QueryContext(ctx, d.rebind(`SELECT id, op, attempts, created_at FROM writebacks WHERE account_id = ? AND status = 0 ORDER BY id LIMIT ?`), acct, limit)
	if err != nil {
		return nil, fmt.Errorf("db: list write-backs: %w", err)
	}
	defer rows.Close()
	var out []*mailbusv1.WriteBack
	for rows.Next() {
		var id, created int64
		var attempts int
		var op []byte
		if err := rows.Scan(&id, &op, &attempts, &created); err != nil {
			return nil, fmt.Errorf("db: list write-backs: %w", err)
		}
		wb := &mailbusv1.WriteBack{}
		if err := proto.Unmarshal(op, wb); err != nil {
			return nil, fmt.Errorf("db: write-back %d: %w", id, err)
		}
		wb.Id, wb.AccountId, wb.Attempts = formatID(id), accountID, uint32(attempts)
		wb.CreateTime = timestamppb.New(time.UnixMicro(created))
		out = append(out, wb)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: list write-backs: %w", err)
	}
	return out, nil
}

// AckWriteBack records how a write-back ended. Acknowledging one that is no
// longer pending is a no-op, so a retried acknowledgement is harmless.
func (d *DB) AckWriteBack(ctx context.Context, req *mailbusv1.AckWriteBackRequest) error {
	id, err := parseID("writeback_id", req.GetWritebackId())
	if err != nil {
		return err
	}
	switch req.Outcome {
	case mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED, mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED, mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY:
	default:
		return invalid("outcome", "must be APPLIED, FAILED or RETRY")
	}
	origin := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM}
	return d.inTx(ctx, origin, func(t *tx) error {
		var acct int64
		err := t.queryRow(ctx, `SELECT account_id FROM writebacks WHERE id = ?`, id).Scan(&acct)
		if errors.Is(err, sql.ErrNoRows) {
			return notFound("write-back", req.WritebackId)
		}
		if err != nil {
			return fmt.Errorf("db: ack write-back: %w", err)
		}
		a, err := t.lock(ctx, acct)
		if err != nil {
			return err
		}
		if err := t.fence(ctx, a, req.LeaseToken); err != nil {
			return err
		}
		// Read the status under the account lock: of two concurrent
		// acknowledgements of one write-back, only the first applies.
		var status int
		var op []byte
		var device string
		if err := t.queryRow(ctx, `SELECT status, op, device_id FROM writebacks WHERE id = ?`, id).Scan(&status, &op, &device); err != nil {
			return fmt.Errorf("db: ack write-back: %w", err)
		}
		if status != wbPending {
			return nil
		}
		wb := &mailbusv1.WriteBack{}
		if err := proto.Unmarshal(op, wb); err != nil {
			return fmt.Errorf("db: write-back %d: %w", id, err)
		}
		now := t.d.nowMicros()
		if req.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY {
			_, err := t.exec(ctx, `UPDATE writebacks SET attempts = attempts + 1, reason = ?, updated_at = ? WHERE id = ?`, truncate(req.Reason, 2000), now, id)
			return err
		}
		newStatus := wbApplied
		if req.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED {
			newStatus = wbFailed
		}
		if _, err := t.exec(ctx, `UPDATE writebacks SET status = ?, attempts = attempts + 1, reason = ?, updated_at = ? WHERE id = ?`, newStatus, truncate(req.Reason, 2000), now, id); err != nil {
			return fmt.Errorf("db: ack write-back: %w", err)
		}
		if err := t.adjustPending(ctx, wb, -1); err != nil {
			return err
		}
		for _, pl := range req.Placements {
			if err := t.place(ctx, a, pl); err != nil {
				return err
			}
		}
		if newStatus == wbApplied {
			if err := t.awaitPlacement(ctx, wb, req.Placements); err != nil {
				return err
			}
		}
		if cm := wb.GetCreateMailbox(); cm != nil && req.Uidvalidity != 0 {
			mb, _ := parseID("mailbox_id", cm.MailboxId)
			if _, err := t.exec(ctx, `UPDATE mailboxes SET uidvalidity = ? WHERE id = ?`, int64(req.Uidvalidity), mb); err != nil {
				return fmt.Errorf("db: ack write-back: %w", err)
			}
		}
		for _, gone := range req.GoneMessageIds {
			if err := t.deleteIfExists(ctx, a, gone); err != nil {
				return err
			}
		}
		if newStatus == wbFailed {
			return t.followServer(ctx, a, req.WritebackId, device, wb, req.Reason)
		}
		return nil
	})
}

// place records a message's new upstream identity after a move or an
// append, and rewrites later pending write-backs that target the message.
func (t *tx) place(ctx context.Context, a *lockedAccount, pl *mailbusv1.UpstreamPlacement) error {
	id, err := parseID("placements.message_id", pl.MessageId)
	if err != nil {
		return err
	}
	up := pl.GetUpstream()
	mb, err := parseID("placements.upstream.mailbox_id", up.GetMailboxId())
	if err != nil {
		return err
	}
	if up.GetUid() == 0 || up.GetUidvalidity() == 0 {
		// The server gave no COPYUID/APPENDUID: the next sync of the
		// mailbox finds the message by content hash.
		return nil
	}
	// A row already holding this identity is a copy ingested before the
	// placement arrived: the device's message wins, the copy goes.
	other, err := t.messageByUpstream(ctx, a.id, up)
	if err != nil {
		return err
	}
	if other != nil && other.id != id {
		if err := t.deleteMessageRow(ctx, a.id, other.id, other.mailbox); err != nil {
			return err
		}
	}
	if _, err := t.exec(ctx, `UPDATE messages SET up_mailbox_id = ?, uidvalidity = ?, uid = ?, awaiting_placement = 0 WHERE id = ? AND account_id = ?`, mb, int64(up.Uidvalidity), int64(up.Uid), id, a.id); err != nil {
		return fmt.Errorf("db: placement: %w", err)
	}
	// Later pending write-backs (a delete of a message deleted meanwhile
	// included) must act on the new place.
	return t.retarget(ctx, a.id, pl)
}

// awaitPlacement marks the messages an applied move or append left without
// a new identity (the server sent no COPYUID/APPENDUID): the next sync of
// the destination adopts them by content hash, and until then their old
// identity's expunge does not delete them. A message that already has an
// identity in the destination is not waiting for one: a sync during the
// write-back adopted its copy there (a third party's move of it, or an
// earlier unacknowledged attempt), and marking it would make the store
// ignore that copy's expunges and flag changes for good (issue 17 A).
func (t *tx) awaitPlacement(ctx context.Context, wb *mailbusv1.WriteBack, placements []*mailbusv1.UpstreamPlacement) error {
	var targets []*mailbusv1.WriteBackTarget
	var dest string
	switch op := wb.Op.(type) {
	case *mailbusv1.WriteBack_Move:
		targets, dest = pendingTargets(wb), op.Move.ToMailboxId
	case *mailbusv1.WriteBack_Append:
		targets, dest = pendingTargets(wb), op.Append.MailboxId
	}
	destID, err := parseID("mailbox_id", dest)
	if len(targets) > 0 && err != nil {
		return err
	}
	placed := map[string]bool{}
	for _, pl := range placements {
		if pl.GetUpstream().GetUid() != 0 {
			placed[pl.MessageId] = true
		}
	}
	for _, tg := range targets {
		if placed[tg.MessageId] {
			continue
		}
		id, err := parseID("message_id", tg.MessageId)
		if err != nil {
			return err
		}
		if _, err := t.exec(ctx, `UPDATE messages SET awaiting_placement = 1 WHERE id = ? AND NOT (up_mailbox_id = ? AND uid > 0)`, id, destID); err != nil {
			return fmt.Errorf("db: await placement: %w", err)
		}
	}
	return nil
}

// retarget updates the upstream identity of a message in the account's
// pending write-backs.
func (t *tx) retarget(ctx context.Context, accountID int64, pl *mailbusv1.UpstreamPlacement) error {
	rows, err := t.query(ctx, `SELECT id, op FROM writebacks WHERE account_id = ? AND status = 0`, accountID)
	if err != nil {
		return fmt.Errorf("db: retarget: %w", err)
	}
	type upd struct {
		id int64
		op []byte
	}
	var updates []upd
	for rows.Next() {
		var id int64
		var op []byte
		if err := rows.Scan(&id, &op); err != nil {
			rows.Close()
			return fmt.Errorf("db: retarget: %w", err)
		}
		wb := &mailbusv1.WriteBack{}
		if err := proto.Unmarshal(op, wb); err != nil {
			rows.Close()
			return fmt.Errorf("db: retarget: %w", err)
		}
		changed := false
		for _, tg := range allTargets(wb) {
			if tg.MessageId == pl.MessageId {
				tg.Upstream = pl.Upstream
				tg.MailboxName = ""
				changed = true
			}
		}
		if changed {
			b, err := proto.Marshal(wb)
			if err != nil {
				rows.Close()
				return fmt.Errorf("db: retarget: %w", err)
			}
			updates = append(updates, upd{id, b})
		}
	}
	rows.Close()
	for _, u := range updates {
		if _, err := t.exec(ctx, `UPDATE writebacks SET op = ? WHERE id = ?`, u.op, u.id); err != nil {
			return fmt.Errorf("db: retarget: %w", err)
		}
	}
	return nil
}

// hasPendingMove reports whether a pending move write-back targets the
// message.
func (t *tx) hasPendingMove(ctx context.Context, accountID int64, messageID string) (bool, error) {
	rows, err := t.query(ctx, `SELECT op FROM writebacks WHERE account_id = ? AND status = 0`, accountID)
	if err != nil {
		return false, fmt.Errorf("db: pending moves: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var op []byte
		if err := rows.Scan(&op); err != nil {
			return false, fmt.Errorf("db: pending moves: %w", err)
		}
		wb := &mailbusv1.WriteBack{}
		if err := proto.Unmarshal(op, wb); err != nil {
			return false, fmt.Errorf("db: pending moves: %w", err)
		}
		for _, tg := range wb.GetMove().GetTargets() {
			if tg.MessageId == messageID {
				return true, nil
			}
		}
	}
	return false, rows.Err()
}

func allTargets(wb *mailbusv1.WriteBack) []*mailbusv1.WriteBackTarget {
	switch op := wb.Op.(type) {
	case *mailbusv1.WriteBack_Flags:
		return op.Flags.Targets
	case *mailbusv1.WriteBack_Move:
		return op.Move.Targets
	case *mailbusv1.WriteBack_Delete:
		return op.Delete.Targets
	}
	return nil
}

func (t *tx) deleteIfExists(ctx context.Context, a *lockedAccount, messageID string) error {
	id, err := parseID("gone_message_ids", messageID)
	if err != nil {
		return err
	}
	m, err := t.messageByID(ctx, id)
	if errors.Is(err, ErrNotFound) || (err == nil && m.account != a.id) {
		return nil
	}
	if err != nil {
		return err
	}
	return t.deleteMessageRow(ctx, a.id, m.id, m.mailbox)
}

// followServer undoes in the store what a failed write-back could not do
// upstream, and announces the failure: a move goes back to the message's
// upstream mailbox, an appended message that never reached the server and
// a mailbox the server refused to create are removed, a refused rename is
// reverted. A failed flag change is left for the next sync to correct from
// the server's flags; a failed delete lets the next sync bring the message
// (or the mailbox) back. The event names the messages, or the mailbox of a
// mailbox operation with the name the device gave it.
func (t *tx) followServer(ctx context.Context, a *lockedAccount, wbID, device string, wb *mailbusv1.WriteBack, reason string) error {
	var ids []string
	var mailboxID, mailboxName string // of a refused mailbox operation
	switch op := wb.Op.(type) {
	case *mailbusv1.WriteBack_Move:
		for _, tg := range op.Move.Targets {
			ids = append(ids, tg.MessageId)
			id, _ := parseID("message_id", tg.MessageId)
			m, err := t.messageByID(ctx, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if m.upMailbox == 0 || m.mailbox == m.upMailbox {
				continue
			}
			later, err := t.hasPendingMove(ctx, a.id, tg.MessageId)
			if err != nil {
				return err
			}
			if later {
				// A later move of the message decides where it ends.
				continue
			}
			if _, err := t.mailboxByID(ctx, m.upMailbox); errors.Is(err, ErrNotFound) {
				// Its upstream mailbox is gone, and it with it.
				if err := t.deleteMessageRow(ctx, a.id, m.id, m.mailbox); err != nil {
					return err
				}
				continue
			}
			if err := t.moveMessage(ctx, a, m, m.upMailbox); err != nil {
				return err
			}
		}
	case *mailbusv1.WriteBack_Append:
		ids = append(ids, op.Append.MessageId)
		id, _ := parseID("message_id", op.Append.MessageId)
		if m, err := t.messageByID(ctx, id); err == nil && m.uid == 0 {
			if err := t.deleteMessageRow(ctx, a.id, m.id, m.mailbox); err != nil {
				return err
			}
		}
	case *mailbusv1.WriteBack_CreateMailbox:
		mailboxID, mailboxName = op.CreateMailbox.MailboxId, op.CreateMailbox.Name
		id, _ := parseID("mailbox_id", op.CreateMailbox.MailboxId)
		if mb, err := t.mailboxByID(ctx, id); err == nil {
			if err := t.deleteMailbox(ctx, mb.Mailbox); err != nil {
				return err
			}
		}
	case *mailbusv1.WriteBack_RenameMailbox:
		mailboxID, mailboxName = op.RenameMailbox.MailboxId, op.RenameMailbox.NewName
		id, _ := parseID("mailbox_id", op.RenameMailbox.MailboxId)
		if mb, err := t.mailboxByID(ctx, id); err == nil && mb.Mailbox.Name == op.RenameMailbox.NewName {
			if err := t.mailboxNameFree(ctx, a.id, op.RenameMailbox.OldName, id); err == nil {
				if _, err := t.renameMailbox(ctx, mb.Mailbox, op.RenameMailbox.OldName, ""); err != nil {
					return err
				}
			}
		}
	case *mailbusv1.WriteBack_DeleteMailbox:
		// The next sync of the folder list brings the mailbox back.
		mailboxID, mailboxName = op.DeleteMailbox.MailboxId, op.DeleteMailbox.Name
	case *mailbusv1.WriteBack_Flags:
		for _, tg := range op.Flags.Targets {
			ids = append(ids, tg.MessageId)
		}
	case *mailbusv1.WriteBack_Delete:
		for _, tg := range op.Delete.Targets {
			ids = append(ids, tg.MessageId)
		}
	}
	return t.emit(ctx, a.id, a.modseq, 0, &mailbusv1.Event{Payload: &mailbusv1.Event_WritebackFailed{WritebackFailed: &mailbusv1.WriteBackFailed{
		WritebackId: wbID, DeviceId: device, Reason: truncate(reason, 2000), MessageIds: ids,
		MailboxId: mailboxID, MailboxName: mailboxName,
	}}})
}

// truncate cuts s to at most n bytes without splitting a character and
// makes it valid UTF-8 (protobuf strings and PostgreSQL text must be).
func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
		// Drop a character cut in two (at most 3 trailing bytes).
		for i := 0; i < utf8.UTFMax-1 && len(s) > 0; i++ {
			r, size := utf8.DecodeLastRuneInString(s)
			if r != utf8.RuneError || size != 1 {
				break
			}
			s = s[:len(s)-1]
		}
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}
