package imapsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailflags"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// applyWriteBacks applies the account's pending write-backs in order and
// acknowledges each. An error of the connection or the store stops the
// pass (the write-back stays pending and is tried again); a refusal by
// the server ends the write-back as FAILED (after a few RETRYs when the
// server says the condition is temporary).
//
// It runs only as a step of the session's loop (or between two of its
// folder syncs, writeBacksBetween): the folder syncs a write-back needs
// are syncForWriteBack's, which apply none, so write-backs never run
// inside write-backs.
func (w *account) applyWriteBacks(ctx context.Context) error {
	w.lastWriteBacks = time.Now()
	resynced := map[string]bool{}
	w.unplacedSynced = map[string]bool{}
	for {
		sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		resp, err := w.st.ingest.ListPendingWriteBacks(sctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: w.a.Id, Max: 100})
		cancel()
		if err != nil {
			return fmt.Errorf("imapsync: pending write-backs: %w", err)
		}
		if len(resp.Writebacks) == 0 {
			return nil
		}
		// A write-back may rename or move what a prefetcher of the
		// initial sync reads by name: it stops first.
		w.prefetch.stop()
		retried := 0
		relist := false
		// A write-back waiting for its retry delay holds back the later
		// ones that act on the same messages or folders (they are applied
		// in order), not the others.
		held := map[string]bool{}
		for _, wb := range resp.Writebacks {
			keys := writeBackKeys(wb)
			if w.retryAt[wb.Id].After(time.Now()) || slices.ContainsFunc(keys, func(k string) bool { return held[k] }) {
				for _, k := range keys {
					held[k] = true
				}
				retried++
				continue
			}
			ack, err := w.applyOne(ctx, wb)
			var rn *resyncNeeded
			if errors.As(err, &rn) {
				f := w.folders[rn.name]
				if f != nil && !resynced[rn.name] {
					resynced[rn.name] = true
					if err := w.syncForWriteBack(ctx, f); err != nil {
						return err
					}
					relist = true
					break
				}
				ack, err = &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY, Reason: "the folder's UIDVALIDITY changed"}, nil
			}
			if err != nil {
				return err
			}
			ack.WritebackId = wb.Id
			ack.LeaseToken = w.token
			if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY {
				if wb.Attempts+1 >= maxWriteBackAttempts {
					ack.Outcome = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
				} else {
					retried++
				}
			}
			if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY {
				if w.retryAt == nil {
					w.retryAt = map[string]time.Time{}
				}
				w.retryAt[wb.Id] = time.Now().Add(w.retryDelay(wb.Attempts + 1))
				for _, k := range keys {
					held[k] = true
				}
			} else {
				delete(w.retryAt, wb.Id)
			}
			if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED {
				w.recheckTargets(wb)
			}
			sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
			_, err = w.st.ingest.AckWriteBack(sctx, ack)
			cancel()
			if err != nil {
				return fmt.Errorf("imapsync: ack write-back %s: %w", wb.Id, err)
			}
			w.s.metrics.writebacks.WithLabelValues(opName(wb), stateLabelOutcome(ack.Outcome)).Inc()
			if ack.Outcome != mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY {
				w.markRecheckDirty()
			}
			if ack.Outcome != mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED {
				w.log.Warn("write-back not applied", "writeback", wb.Id, "op", opName(wb), "outcome", ack.Outcome, "reason", ack.Reason)
			}
			// Moves, deletes and appends change which messages the store
			// has where: read its view again. (A flag change only makes
			// the cached flags stale, and a stale flag only costs a no-op
			// ApplyUpstreamChanges.)
			if _, isFlags := wb.Op.(*mailbusv1.WriteBack_Flags); !isFlags {
				for _, f := range w.folders {
					f.known = nil
				}
			}
			// An applied move or append places messages: the store then
			// rewrites the targets of later write-backs to the new
			// identities, so the rest of this page is stale. Read the
			// list again before going on.
			if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED && placesMessages(wb) {
				// A message placed without COPYUID/APPENDUID is found by
				// the next sync of its folder: one made before it does
				// not establish that a target is absent.
				w.unplacedSynced = map[string]bool{}
				relist = true
				break
			}
		}
		if relist {
			continue
		}
		if len(resp.Writebacks) < 100 || retried == len(resp.Writebacks) {
			return nil
		}
	}
}

// recheckTargets makes the next delta send the server's flags of a failed
// write-back's messages: the store keeps the device's change until the
// server's view comes, and the cache (the server's flags, unchanged)
// would not send it.
func (w *account) recheckTargets(wb *mailbusv1.WriteBack) {
	fl, ok := wb.Op.(*mailbusv1.WriteBack_Flags)
	if !ok {
		return
	}
	for _, t := range fl.Flags.Targets {
		up := t.GetUpstream()
		f := w.folderByID(up.GetMailboxId())
		if f == nil || up.GetUid() == 0 || up.GetUidvalidity() != f.st.GetUidvalidity() {
			continue
		}
		f.addRecheck(up.GetUid(), f.st.GetSyncedHighestmodseq())
		w.markDirty(f.name)
	}
}

// markRecheckDirty marks dirty the folders with flags to read again
// (folder.recheck): a write-back has settled, and with it perhaps the
// device's change the store ignored them for. Left to the poll, a folder
// whose server side changed no further (the third party's change was
// already read) would never be read again, and an IDLEd one is not
// polled.
func (w *account) markRecheckDirty() {
	for name, f := range w.folders {
		if len(f.recheck) > 0 {
			w.markDirty(name)
		}
	}
}

// retryDelay is how long a write-back waits after its attempt-th RETRY:
// Config.WriteBackRetry, doubled at each attempt, at most RetryMax.
func (w *account) retryDelay(attempt uint32) time.Duration {
	d := w.s.cfg.WriteBackRetry
	for i := uint32(1); i < attempt && d < w.s.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, w.s.cfg.RetryMax)
}

// writeBackKeys names what a write-back acts on (its messages and
// folders), so that a later write-back on the same waits for it.
func writeBackKeys(wb *mailbusv1.WriteBack) []string {
	var keys []string
	targets := func(ts []*mailbusv1.WriteBackTarget) {
		for _, t := range ts {
			keys = append(keys, "m:"+t.MessageId)
		}
	}
	folder := func(id, name string) {
		if id != "" {
			keys = append(keys, "f:"+id)
		}
		if name != "" {
			keys = append(keys, "n:"+name)
		}
	}
	switch op := wb.Op.(type) {
	case *mailbusv1.WriteBack_Flags:
		targets(op.Flags.Targets)
	case *mailbusv1.WriteBack_Move:
		targets(op.Move.Targets)
		folder(op.Move.ToMailboxId, op.Move.ToMailboxName)
	case *mailbusv1.WriteBack_Delete:
		targets(op.Delete.Targets)
	case *mailbusv1.WriteBack_Append:
		keys = append(keys, "m:"+op.Append.MessageId)
		folder(op.Append.MailboxId, op.Append.MailboxName)
	case *mailbusv1.WriteBack_CreateMailbox:
		folder(op.CreateMailbox.MailboxId, op.CreateMailbox.Name)
	case *mailbusv1.WriteBack_RenameMailbox:
		folder(op.RenameMailbox.MailboxId, op.RenameMailbox.OldName)
		folder("", op.RenameMailbox.NewName)
	case *mailbusv1.WriteBack_DeleteMailbox:
		folder(op.DeleteMailbox.MailboxId, op.DeleteMailbox.Name)
	}
	return keys
}

// placesMessages says whether a write-back's acknowledgement can carry
// placements (new upstream identities of messages).
func placesMessages(wb *mailbusv1.WriteBack) bool {
	switch wb.Op.(type) {
	case *mailbusv1.WriteBack_Move, *mailbusv1.WriteBack_Append:
		return true
	}
	return false
}

func opName(wb *mailbusv1.WriteBack) string {
	switch wb.Op.(type) {
	case *mailbusv1.WriteBack_Flags:
		return "flags"
	case *mailbusv1.WriteBack_Move:
		return "move"
	case *mailbusv1.WriteBack_Delete:
		return "delete"
	case *mailbusv1.WriteBack_Append:
		return "append"
	case *mailbusv1.WriteBack_CreateMailbox:
		return "create_mailbox"
	case *mailbusv1.WriteBack_RenameMailbox:
		return "rename_mailbox"
	case *mailbusv1.WriteBack_DeleteMailbox:
		return "delete_mailbox"
	}
	return "unknown"
}

func stateLabelOutcome(o mailbusv1.WriteBackOutcome) string {
	switch o {
	case mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED:
		return "applied"
	case mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED:
		return "failed"
	}
	return "retry"
}

func applied() *mailbusv1.AckWriteBackRequest {
	return &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED}
}

// refused turns a server's refusal into FAILED, or RETRY when the server
// says it is temporary.
func refused(err error, what string) *mailbusv1.AckWriteBackRequest {
	o := mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
	switch imapconn.Code(err) {
	case imap.ResponseCodeUnavailable, imap.ResponseCodeInUse, imap.ResponseCodeServerBug, imap.ResponseCodeLimit, imap.ResponseCodeOverQuota:
		o = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY
	}
	return &mailbusv1.AckWriteBackRequest{Outcome: o, Reason: what + ": " + err.Error()}
}

// applyOne applies one write-back. The error is for the connection or
// the store; the server's answer is in the acknowledgement.
func (w *account) applyOne(ctx context.Context, wb *mailbusv1.WriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	var targets []*mailbusv1.WriteBackTarget
	switch op := wb.Op.(type) {
	case *mailbusv1.WriteBack_Flags:
		targets = op.Flags.Targets
	case *mailbusv1.WriteBack_Move:
		targets = op.Move.Targets
	case *mailbusv1.WriteBack_Delete:
		targets = op.Delete.Targets
	}
	unplaced, absent, err := w.placeTargets(ctx, targets)
	if err != nil {
		return nil, err
	}
	if len(unplaced) > 0 {
		// Never APPLIED with a target left out: the message is on the
		// server (or will be) under an identity not known yet. The
		// messages a sync of their folder did not find go with the RETRY
		// (the store ignores them there): when the last attempt turns it
		// into FAILED, the store deletes them, as it does any message a
		// write-back finds gone.
		return &mailbusv1.AckWriteBackRequest{
			Outcome:        mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY,
			Reason:         fmt.Sprintf("messages %v not placed on the server yet", unplaced),
			GoneMessageIds: absent,
		}, nil
	}
	switch op := wb.Op.(type) {
	case *mailbusv1.WriteBack_Flags:
		return w.wbFlags(ctx, op.Flags)
	case *mailbusv1.WriteBack_Move:
		return w.wbMove(ctx, op.Move.Targets, op.Move.ToMailboxId, op.Move.ToMailboxName, false)
	case *mailbusv1.WriteBack_Delete:
		return w.wbDelete(ctx, op.Delete)
	case *mailbusv1.WriteBack_Append:
		return w.wbAppend(ctx, op.Append)
	case *mailbusv1.WriteBack_CreateMailbox:
		return w.wbCreate(ctx, op.CreateMailbox)
	case *mailbusv1.WriteBack_RenameMailbox:
		return w.wbRename(ctx, op.RenameMailbox)
	case *mailbusv1.WriteBack_DeleteMailbox:
		return w.wbDeleteMailbox(ctx, op.DeleteMailbox)
	}
	return &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED, Reason: "unknown write-back operation"}, nil
}

// placeTargets finds the upstream identity of targets that have none yet
// (uid 0: an append or move whose placement never came, e.g. a server
// without UIDPLUS). The target's folder is synced once per pass, which
// adopts the message by content hash, and the store's view of it then
// gives the UID. The ids of targets still without an identity are
// returned, and among them those established absent: their folder was
// synced in this pass (after the last placement) and the store has no
// upstream copy of them there. (A target whose folder is unknown is not
// established absent.)
func (w *account) placeTargets(ctx context.Context, ts []*mailbusv1.WriteBackTarget) (unplaced, absent []string, err error) {
	for _, t := range ts {
		up := t.GetUpstream()
		if up.GetUid() != 0 {
			continue
		}
		f := w.folderByID(up.GetMailboxId())
		if f == nil && t.MailboxName != "" {
			f = w.folders[t.MailboxName]
		}
		if f == nil {
			// The store knows the message's folder.
			sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
			m, err := w.st.mailboxes.GetMessage(sctx, &mailbusv1.GetMessageRequest{MessageId: t.MessageId})
			cancel()
			if err != nil && !isNotFound(err) {
				return nil, nil, fmt.Errorf("imapsync: message of a write-back: %w", err)
			}
			f = w.folderByID(m.GetMessage().GetSummary().GetMailboxId())
		}
		if f == nil {
			unplaced = append(unplaced, t.MessageId)
			continue
		}
		if w.unplacedSynced != nil && !w.unplacedSynced[f.name] {
			w.unplacedSynced[f.name] = true
			if err := w.syncForWriteBack(ctx, f); err != nil {
				return nil, nil, err
			}
		}
		if f.known == nil {
			if _, err := w.loadKnown(ctx, f); err != nil {
				return nil, nil, err
			}
		}
		placed := false
		for u, k := range f.known {
			if k.id == t.MessageId {
				t.Upstream = &mailbusv1.UpstreamId{MailboxId: f.id, Uidvalidity: f.st.GetUidvalidity(), Uid: u}
				t.MailboxName = f.name
				placed = true
				break
			}
		}
		if !placed {
			unplaced = append(unplaced, t.MessageId)
			if w.unplacedSynced[f.name] {
				absent = append(absent, t.MessageId)
			}
		}
	}
	return unplaced, absent, nil
}

// targetGroup is the targets of a write-back in one upstream folder.
type targetGroup struct {
	name        string
	uidvalidity uint32
	byUID       map[uint32]string // uid -> message id
}

// groupTargets groups targets by upstream folder; targets with no
// upstream identity (never on the server) are left out.
func (w *account) groupTargets(ts []*mailbusv1.WriteBackTarget) []*targetGroup {
	var out []*targetGroup
	idx := map[string]*targetGroup{}
	for _, t := range ts {
		up := t.GetUpstream()
		if up.GetUid() == 0 {
			continue
		}
		name := t.MailboxName
		if f := w.folderByID(up.MailboxId); f != nil {
			name = f.name
		}
		if name == "" {
			continue
		}
		key := fmt.Sprintf("%s\x00%d", name, up.Uidvalidity)
		g := idx[key]
		if g == nil {
			g = &targetGroup{name: name, uidvalidity: up.Uidvalidity, byUID: map[uint32]string{}}
			idx[key] = g
			out = append(out, g)
		}
		g.byUID[up.Uid] = t.MessageId
	}
	return out
}

// selectGroup selects the group's folder and returns the UIDs of the group
// that still exist there. ok is false when the folder is gone or its
// UIDVALIDITY changed (the identities mean nothing any more).
func (w *account) selectGroup(ctx context.Context, g *targetGroup) (existing []uint32, missing []uint32, ok bool, err error) {
	sel, err := w.work.Select(ctx, g.name)
	if err != nil {
		if imapconn.IsNo(err) {
			return nil, nil, false, nil
		}
		return nil, nil, false, fmt.Errorf("imapsync: write-back: %w", err)
	}
	if sel.UIDValidity != g.uidvalidity {
		// The identities are stale: resync the folder (its rebind moves
		// the pending write-backs to the new identities), then try again.
		return nil, nil, false, &resyncNeeded{name: g.name}
	}
	set := imap.UIDSet{}
	for u := range g.byUID {
		set.AddNum(imap.UID(u))
	}
	found, err := w.work.SearchUIDs(ctx, &imap.SearchCriteria{UID: []imap.UIDSet{set}})
	if err != nil {
		return nil, nil, false, err
	}
	have := map[uint32]bool{}
	for _, u := range found {
		have[u] = true
	}
	for u := range g.byUID {
		if have[u] {
			existing = append(existing, u)
		} else {
			missing = append(missing, u)
		}
	}
	slices.Sort(existing)
	slices.Sort(missing)
	return existing, missing, true, nil
}

// wbFlags adds and removes flags. +FLAGS and -FLAGS commute with any other
// client's changes, so no UNCHANGEDSINCE is needed (see decision 0006).
// Messages gone upstream are reported; when every target is gone the
// write-back fails.
func (w *account) wbFlags(ctx context.Context, op *mailbusv1.FlagsWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	ack := applied()
	total, gone := 0, 0
	for _, g := range w.groupTargets(op.Targets) {
		total += len(g.byUID)
		existing, missing, ok, err := w.selectGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = slices.Collect(mapsKeys(g.byUID))
		}
		for _, u := range missing {
			ack.GoneMessageIds = append(ack.GoneMessageIds, g.byUID[u])
			gone++
		}
		if len(existing) == 0 {
			continue
		}
		for _, ch := range []struct {
			op    imap.StoreFlagsOp
			flags []string
		}{{imap.StoreFlagsAdd, op.Add}, {imap.StoreFlagsDel, op.Remove}} {
			if len(ch.flags) == 0 {
				continue
			}
			if err := w.work.StoreFlags(ctx, existing, ch.op, toFlags(ch.flags)); err != nil {
				if imapconn.IsNo(err) {
					return refused(err, "STORE in "+g.name), nil
				}
				return nil, fmt.Errorf("imapsync: STORE: %w", err)
			}
		}
		// The cached flags follow, so that the echo of this change is
		// recognised without asking the store.
		if f := w.folders[g.name]; f != nil && f.known != nil && f.st.Uidvalidity == g.uidvalidity {
			for _, u := range existing {
				if k := f.known[u]; k != nil {
					k.flags, _, _ = mailflags.Apply(k.flags, op.Add, op.Remove)
				}
			}
		}
	}
	if total > 0 && gone == total {
		ack.Outcome = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
		ack.Reason = "the messages no longer exist on the server"
	}
	return ack, nil
}

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
		// Found there (moved by an earlier attempt, or by a third party):
		// the UID the sync adopted is the placement.
		there, err := w.placedIn(ctx, toID, maybeMoved)
		if err != nil {
			return nil, err
		}
		f := w.folderByID(toID)
		for _, id := range maybeMoved {
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
	}
	if total > 0 && gone == total {
		ack.Outcome = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
		ack.Reason = "the messages no longer exist on the server"
	}
	return ack, nil
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

func mapsKeys(m map[uint32]string) func(func(uint32) bool) {
	return func(yield func(uint32) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func mapsValues(m map[uint32]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for _, v := range m {
			if !yield(v) {
				return
			}
		}
	}
}

// placedIn is presentIn with the UIDs the messages have in the folder.
func (w *account) placedIn(ctx context.Context, mailboxID string, ids []string) (map[string]uint32, error) {
	there, err := w.presentIn(ctx, mailboxID, ids)
	if err != nil || len(there) == 0 {
		return nil, err
	}
	out := map[string]uint32{}
	if f := w.folderByID(mailboxID); f != nil {
		for u, k := range f.known {
			if there[k.id] {
				out[k.id] = u
			}
		}
	}
	return out, nil
}

// presentIn syncs a folder and says which of the messages the store now
// has there upstream (an earlier, unacknowledged move or append that the
// sync adopted by content hash).
func (w *account) presentIn(ctx context.Context, mailboxID string, ids []string) (map[string]bool, error) {
	out := map[string]bool{}
	f := w.folderByID(mailboxID)
	if f == nil {
		// Perhaps created by an earlier write-back of this pass.
		if err := w.syncFolderList(ctx); err != nil {
			return nil, err
		}
		if f = w.folderByID(mailboxID); f == nil {
			return out, nil
		}
	}
	if err := w.syncForWriteBack(ctx, f); err != nil {
		return nil, err
	}
	if f.known == nil {
		if _, err := w.loadKnown(ctx, f); err != nil {
			return nil, err
		}
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	for _, k := range f.known {
		if want[k.id] {
			out[k.id] = true
		}
	}
	return out, nil
}

// wbDelete moves messages to the Trash folder when the account has one
// (and they are not in it), else marks them \Deleted and expunges them
// (UID EXPUNGE with UIDPLUS; a plain EXPUNGE without it).
func (w *account) wbDelete(ctx context.Context, op *mailbusv1.DeleteWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	trash := w.folderByRole(mailbusv1.MailboxRole_MAILBOX_ROLE_TRASH)
	for _, g := range w.groupTargets(op.Targets) {
		if trash != nil && g.name != trash.name {
			var ts []*mailbusv1.WriteBackTarget
			for u, id := range g.byUID {
				ts = append(ts, &mailbusv1.WriteBackTarget{MessageId: id, MailboxName: g.name, Upstream: &mailbusv1.UpstreamId{Uidvalidity: g.uidvalidity, Uid: u}})
			}
			ack, err := w.wbMove(ctx, ts, trash.id, trash.name, true)
			if err != nil || ack.Outcome != mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED {
				return ack, err
			}
			continue
		}
		existing, _, ok, err := w.selectGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		if !ok || len(existing) == 0 {
			continue
		}
		if err := w.work.ExpungeUIDs(ctx, existing); err != nil {
			if imapconn.IsNo(err) {
				return refused(err, "delete in "+g.name), nil
			}
			return nil, fmt.Errorf("imapsync: delete: %w", err)
		}
	}
	return applied(), nil
}

// wbAppend appends a stored message. An earlier attempt may have reached
// the server without being acknowledged: the destination is synced first
// (adopting such a copy by content hash), and the message is appended only
// if it is not there.
func (w *account) wbAppend(ctx context.Context, op *mailbusv1.AppendWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	there, err := w.presentIn(ctx, op.MailboxId, []string{op.MessageId})
	if err != nil {
		return nil, err
	}
	if there[op.MessageId] {
		return applied(), nil
	}
	name := op.MailboxName
	if f := w.folderByID(op.MailboxId); f != nil {
		name = f.name
	}
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	stream, err := w.st.mailboxes.GetRawMessage(sctx, &mailbusv1.GetRawMessageRequest{MessageId: op.MessageId})
	if err != nil {
		return nil, fmt.Errorf("imapsync: raw message: %w", err)
	}
	var raw []byte
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if isNotFound(err) {
				// Deleted by a device meanwhile: nothing to append.
				return applied(), nil
			}
			return nil, fmt.Errorf("imapsync: raw message: %w", err)
		}
		raw = append(raw, resp.Data...)
	}
	var date time.Time
	if op.InternalDate != nil {
		date = op.InternalDate.AsTime()
	}
	data, err := w.work.Append(ctx, name, raw, toFlags(op.Flags), date)
	if err != nil {
		if imapconn.IsNo(err) {
			return refused(err, "APPEND to "+name), nil
		}
		return nil, fmt.Errorf("imapsync: APPEND: %w", err)
	}
	ack := applied()
	if data != nil && data.UID != 0 {
		ack.Placements = []*mailbusv1.UpstreamPlacement{{MessageId: op.MessageId, Upstream: &mailbusv1.UpstreamId{MailboxId: op.MailboxId, Uidvalidity: data.UIDValidity, Uid: uint32(data.UID)}}}
		return ack, nil
	}
	// No APPENDUID (no UIDPLUS): sync the folder now, while the append
	// is still pending, so that the store adopts the copy by content hash,
	// and report its UID as the placement. Left for later, a delete of the
	// message would have no identity to act on.
	if _, err := w.presentIn(ctx, op.MailboxId, []string{op.MessageId}); err != nil {
		return nil, err
	}
	if f := w.folderByID(op.MailboxId); f != nil {
		for u, k := range f.known {
			if k.id == op.MessageId {
				ack.Placements = []*mailbusv1.UpstreamPlacement{{MessageId: op.MessageId, Upstream: &mailbusv1.UpstreamId{MailboxId: op.MailboxId, Uidvalidity: f.st.GetUidvalidity(), Uid: u}}}
				break
			}
		}
	}
	return ack, nil
}

func (w *account) wbCreate(ctx context.Context, op *mailbusv1.CreateMailboxWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	w.relist = true
	err := w.work.Create(ctx, op.Name)
	if err != nil && !(imapconn.IsNo(err) && imapconn.Code(err) == imap.ResponseCodeAlreadyExists) {
		if imapconn.IsNo(err) {
			// Some servers answer an existing folder without the code.
			if uv, serr := w.work.UIDValidity(ctx, op.Name); serr == nil && uv != 0 {
				return &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED, Uidvalidity: uv}, nil
			}
			return refused(err, "CREATE "+op.Name), nil
		}
		return nil, fmt.Errorf("imapsync: CREATE: %w", err)
	}
	uv, err := w.work.UIDValidity(ctx, op.Name)
	if err != nil && !imapconn.IsNo(err) {
		return nil, err
	}
	return &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED, Uidvalidity: uv}, nil
}

func (w *account) wbRename(ctx context.Context, op *mailbusv1.RenameMailboxWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	w.relist = true
	err := w.work.Rename(ctx, op.OldName, op.NewName)
	if err != nil {
		if imapconn.IsNo(err) {
			// Done by an earlier attempt: the old name is gone, the new
			// one exists.
			if _, serr := w.work.UIDValidity(ctx, op.NewName); serr == nil {
				if _, oerr := w.work.UIDValidity(ctx, op.OldName); oerr != nil {
					return applied(), nil
				}
			}
			return refused(err, "RENAME "+op.OldName), nil
		}
		return nil, fmt.Errorf("imapsync: RENAME: %w", err)
	}
	return applied(), nil
}

func (w *account) wbDeleteMailbox(ctx context.Context, op *mailbusv1.DeleteMailboxWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	w.relist = true
	err := w.work.Delete(ctx, op.Name)
	if err != nil {
		if imapconn.IsNo(err) {
			if _, serr := w.work.UIDValidity(ctx, op.Name); serr != nil {
				return applied(), nil // already gone
			}
			return refused(err, "DELETE "+op.Name), nil
		}
		return nil, fmt.Errorf("imapsync: DELETE: %w", err)
	}
	return applied(), nil
}

// resyncNeeded says a write-back's folder changed UIDVALIDITY.
type resyncNeeded struct{ name string }

func (e *resyncNeeded) Error() string { return "imapsync: UIDVALIDITY of " + e.name + " changed" }

// writeBacksDue reports (and consumes) a write-back wake-up, or that the
// write-back poll interval has passed.
func (w *account) writeBacksDue() bool {
	select {
	case <-w.wb:
		return true
	default:
		return time.Since(w.lastWriteBacks) >= w.s.cfg.WriteBackPoll
	}
}

// writeBacksBetween applies write-backs a device made while a pass over
// several folders is going on, between two folders, so that they do not
// wait for the whole pass.
func (w *account) writeBacksBetween(ctx context.Context) error {
	select {
	case <-w.wb:
		return w.applyWriteBacks(ctx)
	default:
		return nil
	}
}
