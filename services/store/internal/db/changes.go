package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// dataKinds are the event kinds that change an account's state.
const dataKinds = `('message.created','message.updated','message.deleted','mailbox.created','mailbox.updated','mailbox.deleted')`

// checkSince refuses a since state the change log cannot answer from: one
// newer than the account's current state (from another store, or a
// database restored from a backup) or older than the oldest kept change.
// Both are ErrCannotCalculateChanges: the device resyncs.
func checkSince(since, state, minState uint64) error {
	if since > state {
		return fmt.Errorf("state %d is newer than the account's current state %d: %w", since, state, ErrCannotCalculateChanges)
	}
	if since < minState {
		return fmt.Errorf("state %d is older than the kept change log (oldest %d): %w", since, minState, ErrCannotCalculateChanges)
	}
	return nil
}

// GetChanges returns the objects created, updated and deleted after since,
// from at most max changes, oldest first. A state older than the kept log
// (or newer than the account's) is ErrCannotCalculateChanges.
func (d *DB) GetChanges(ctx context.Context, accountID string, since uint64, max int) (*mailbusv1.GetChangesResponse, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return nil, err
	}
	rtx, err := d.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead})
	if err != nil {
		return nil, fmt.Errorf("db: changes: %w", err)
	}
	defer rtx.Rollback()
	var state, minState int64
	err = rtx.QueryRowContext(ctx, d.rebind(`SELECT modseq, min_state FROM accounts WHERE id = ?`), acct).Scan(&state, &minState)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("account", accountID)
	}
	if err != nil {
		return nil, fmt.Errorf("db: changes: %w", err)
	}
	if err := checkSince(since, uint64(state), uint64(minState)); err != nil {
		return nil, err
	}
	out := &mailbusv1.GetChangesResponse{OldState: since, NewState: since}
	rows, err := rtx.QueryContext(ctx, d.rebind(`SELECT kind, object_id, state FROM events WHERE account_id = ? AND state > ? AND kind IN `+dataKinds+` ORDER BY state LIMIT ?`), acct, int64(since), max+1)
	if err != nil {
		return nil, fmt.Errorf("db: changes: %w", err)
	}
	defer rows.Close()
	msgs, boxes := newChangeSet(), newChangeSet()
	n := 0
	for rows.Next() {
		var kind string
		var obj, st int64
		if err := rows.Scan(&kind, &obj, &st); err != nil {
			return nil, fmt.Errorf("db: changes: %w", err)
		}
		if n == max {
			out.HasMore = true
			break
		}
		n++
		out.NewState = uint64(st)
		switch kind {
		case "message.created":
			msgs.add(obj, created)
		case "message.updated":
			msgs.add(obj, updated)
		case "message.deleted":
			msgs.add(obj, deleted)
		case "mailbox.created":
			boxes.add(obj, created)
		case "mailbox.updated":
			boxes.add(obj, updated)
		case "mailbox.deleted":
			boxes.add(obj, deleted)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: changes: %w", err)
	}
	if !out.HasMore {
		// Nothing left: the device is at the current state (status events
		// do not move it).
		out.NewState = uint64(state)
	}
	out.CreatedMessageIds, out.UpdatedMessageIds, out.DeletedMessageIds = msgs.lists()
	out.CreatedMailboxIds, out.UpdatedMailboxIds, out.DeletedMailboxIds = boxes.lists()
	return out, nil
}

type change int

const (
	created change = iota + 1
	updated
	deleted
	vanished // created and deleted within the range
)

// changeSet folds a sequence of changes per object, as JMAP does: created
// then updated is created; created then deleted is nothing; updated then
// deleted is deleted.
type changeSet struct {
	order []int64
	state map[int64]change
}

func newChangeSet() *changeSet { return &changeSet{state: map[int64]change{}} }

func (s *changeSet) add(id int64, c change) {
	prev, ok := s.state[id]
	if !ok {
		s.order = append(s.order, id)
		s.state[id] = c
		return
	}
	switch {
	case prev == created && c == deleted:
		s.state[id] = vanished
	case prev == vanished && c == created:
		s.state[id] = created
	case prev == created || prev == vanished:
		// stays
	case c == deleted:
		s.state[id] = deleted
	case prev == deleted && c == created:
		// ids are never reused; keep deleted
	}
}

func (s *changeSet) lists() (c, u, d []string) {
	for _, id := range s.order {
		switch s.state[id] {
		case created:
			c = append(c, formatID(id))
		case updated:
			u = append(u, formatID(id))
		case deleted:
			d = append(d, formatID(id))
		}
	}
	return c, u, d
}

// StoredEvent is an event read back from the log.
type StoredEvent struct {
	Seq   int64
	Event *mailbusv1.Event
}

// ReplayCursor checks that changes after sinceState can be replayed and
// returns the account's highest event seq: the events of the replay are
// those up to it, the live ones come after it. Per account, events commit
// in seq order (the account row lock), so no event at or below the cursor
// can still appear.
func (d *DB) ReplayCursor(ctx context.Context, accountID string, sinceState uint64) (int64, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return 0, err
	}
	state, minState, err := d.AccountState(ctx, accountID)
	if err != nil {
		return 0, err
	}
	if err := checkSince(sinceState, state, minState); err != nil {
		return 0, err
	}
	var cursor int64
	if err := d.r.QueryRowContext(ctx, d.rebind(`SELECT COALESCE(MAX(seq), 0) FROM events WHERE account_id = ?`), acct).Scan(&cursor); err != nil {
		return 0, fmt.Errorf("db: replay cursor: %w", err)
	}
	return cursor, nil
}

// EventsAfter returns up to limit events of an account with a seq above
// afterSeq, in seq order; with untilSeq > 0 only those up to it, and with
// minState >= 0 only those whose state is above minState.
func (d *DB) EventsAfter(ctx context.Context, accountID string, minState, afterSeq, untilSeq int64, limit int) ([]StoredEvent, error) {
	acct, err := parseID("account_id", accountID)
	if err != nil {
		return nil, err
	}
	if untilSeq <= 0 {
		untilSeq = 1 << 62
	}
	rows, err := d.r.QueryContext(ctx, d.rebind(`SELECT seq, payload FROM events WHERE account_id = ? AND state > ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`),
		acct, minState, afterSeq, untilSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("db: events: %w", err)
	}
	defer rows.Close()
	var out []StoredEvent
	for rows.Next() {
		var seq int64
		var payload []byte
		if err := rows.Scan(&seq, &payload); err != nil {
			return nil, fmt.Errorf("db: events: %w", err)
		}
		ev := &mailbusv1.Event{}
		if err := proto.Unmarshal(payload, ev); err != nil {
			return nil, fmt.Errorf("db: event %d: %w", seq, err)
		}
		out = append(out, StoredEvent{Seq: seq, Event: ev})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: events: %w", err)
	}
	return out, nil
}

// CheckReplayable reports ErrCannotCalculateChanges when changes after
// sinceState are no longer all in the log (a prune ran during a replay).
func (d *DB) CheckReplayable(ctx context.Context, accountID string, sinceState uint64) error {
	_, minState, err := d.AccountState(ctx, accountID)
	if err != nil {
		return err
	}
	if sinceState < minState {
		return fmt.Errorf("the change log was pruned past state %d during the replay: %w", sinceState, ErrCannotCalculateChanges)
	}
	return nil
}
