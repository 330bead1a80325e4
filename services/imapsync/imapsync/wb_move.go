package imapsync

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// wbMove moves messages with MOVE (or COPY, \Deleted, UID EXPUNGE) and
// reports their new UIDs from COPYUID. A target missing from its source
// may have been moved already by an earlier attempt that was not
// acknowledged: the destination is synced first, which adopts such a copy
// by content hash; only then is it reported gone.
func (w *account) wbMove(ctx context.Context, targets []*mailbusv1.WriteBackTarget, toID, toName string, isDelete bool) (*mailbusv1.AckWriteBackRequest, error) {
	ack := applied()
	if f := w.folderByID(toID); f != nil {
		toName = f.name
	}
	total, gone := 0, 0
	var maybeMoved []string
	for _, g := range w.groupTargets(targets) {
		total += len(g.byUID)
		if g.name == toName {
			// Already in the destination upstream (a device moved it back
			// before the first move reached the server, or the sync adopted
			// the copy of an earlier attempt): nothing to move, and above
			// all not "the source" to delete. Its identity is its
			// placement (an APPLIED move without one would leave it
			// awaiting a placement that never comes).
			if !isDelete {
				for u, id := range g.byUID {
					ack.Placements = append(ack.Placements, &mailbusv1.UpstreamPlacement{MessageId: id, Upstream: &mailbusv1.UpstreamId{MailboxId: toID, Uidvalidity: g.uidvalidity, Uid: u}})
				}
			}
			continue
		}
		// Without MOVE an earlier attempt may have copied the messages and
		// been cut before deleting them from the source: sync the
		// destination first (adopting such copies by content hash) so
		// that they are not copied twice.
		var copied map[string]uint32
		if !w.work.Caps().Has(imap.CapMove) {
			var err error
			if copied, err = w.placedIn(ctx, toID, slices.Collect(mapsValues(g.byUID))); err != nil {
				return nil, err
			}
		}
		existing, missing, ok, err := w.selectGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = slices.Collect(mapsKeys(g.byUID))
		}
		for _, u := range missing {
			maybeMoved = append(maybeMoved, g.byUID[u])
		}
		var already []uint32
		existing = slices.DeleteFunc(existing, func(u uint32) bool {
			if _, ok := copied[g.byUID[u]]; ok {
				already = append(already, u)
				return true
			}
			return false
		})
		if len(already) > 0 {
			if err := w.work.ExpungeUIDs(ctx, already); err != nil {
				if imapconn.IsNo(err) {
					return refused(err, "delete moved copies in "+g.name), nil
				}
				return nil, fmt.Errorf("imapsync: delete moved copies: %w", err)
			}
			if f := w.folderByID(toID); f != nil && !isDelete {
				for _, u := range already {
					id := g.byUID[u]
					ack.Placements = append(ack.Placements, &mailbusv1.UpstreamPlacement{MessageId: id, Upstream: &mailbusv1.UpstreamId{MailboxId: toID, Uidvalidity: f.st.GetUidvalidity(), Uid: copied[id]}})
				}
			}
		}
		if len(existing) == 0 {
			continue
		}
		md, err := w.work.MoveUIDs(ctx, existing, toName)
		if err != nil {
			var ac *imapconn.AfterCopyError
			if errors.As(err, &ac) && imapconn.IsNo(err) {
				return w.copyLeftBehind(ctx, md, g.name, toName, err)
			}
			if imapconn.IsNo(err) {
				return refused(err, "MOVE from "+g.name+" to "+toName), nil
			}
			// A cut connection after COPY leaves the copy: the next
			// attempt finds it in the destination (placedIn above) and
			// only deletes the source.
			return nil, fmt.Errorf("imapsync: MOVE: %w", err)
		}
		if !isDelete {
			for _, p := range md.Pairs() {
				if id := g.byUID[p.Source]; id != "" {
					ack.Placements = append(ack.Placements, &mailbusv1.UpstreamPlacement{MessageId: id, Upstream: &mailbusv1.UpstreamId{MailboxId: toID, Uidvalidity: md.UIDValidity, Uid: p.Dest}})
				}
			}
		}
	}
	if len(maybeMoved) > 0 {
		if isDelete {
			// Already gone from the source: the delete's effect holds.
			return ack, nil
		}
		n, err := w.placeMaybeMoved(ctx, ack, toID, maybeMoved)
		if err != nil {
			return nil, err
		}
		gone += n
	}
	if total > 0 && gone == total {
		ack.Outcome = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
		ack.Reason = "the messages no longer exist on the server"
	}
	return ack, nil
}

// placeMaybeMoved looks for targets missing from their source in the
// destination (toID), which it syncs: one found there (moved by an
// earlier attempt, or by a third party) is placed with the UID the sync
// adopted; the others are gone, and their number is returned.
func (w *account) placeMaybeMoved(ctx context.Context, ack *mailbusv1.AckWriteBackRequest, toID string, ids []string) (gone int, err error) {
	there, err := w.placedIn(ctx, toID, ids)
	if err != nil {
		return 0, err
	}
	f := w.folderByID(toID)
	for _, id := range ids {
		u, ok := there[id]
		if !ok {
			ack.GoneMessageIds = append(ack.GoneMessageIds, id)
			gone++
			continue
		}
		if f != nil {
			ack.Placements = append(ack.Placements, &mailbusv1.UpstreamPlacement{MessageId: id, Upstream: &mailbusv1.UpstreamId{MailboxId: toID, Uidvalidity: f.st.GetUidvalidity(), Uid: u}})
		}
	}
	return gone, nil
}

// copyLeftBehind handles a move without MOVE whose COPY succeeded but
// whose STORE \Deleted or EXPUNGE of the source the server refused: the
// server holds the message twice. With COPYUID and UIDPLUS the copy is
// expunged from the destination again (UID STORE \Deleted, UID EXPUNGE of
// exactly its UIDs) and the refusal is reported as usual (RETRY copies
// anew, FAILED leaves the server as before the move). Otherwise, or when
// the server refuses that too, the write-back FAILS at once (a RETRY
// would meet the copy adopted as the message and lose the source): the
// store then puts the message back in its source, and the destination,
// marked dirty, is synced so that the copy is stored as a message of its
// own — both copies known, as on the server.
func (w *account) copyLeftBehind(ctx context.Context, md *imapconn.MoveResult, from, to string, cause error) (*mailbusv1.AckWriteBackRequest, error) {
	ack := refused(cause, "delete after COPY from "+from+" to "+to)
	if w.work.CanUndoCopy(md) {
		err := w.work.UndoCopy(ctx, to, md)
		if err == nil {
			ack.Reason += "; the copy was removed again"
			return ack, nil
		}
		if !imapconn.IsNo(err) {
			// The next attempt finds the copy in the destination and
			// finishes the move.
			return nil, fmt.Errorf("imapsync: remove the copy in %s: %w", to, err)
		}
		ack.Reason += "; removing the copy was refused: " + err.Error()
	}
	ack.Outcome = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
	ack.Reason += "; the copy in " + to + " stays and is synced as a message of its own"
	w.markDirty(to)
	return ack, nil
}
