package imapsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
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
			if err := w.acknowledge(ctx, wb, ack); err != nil {
				return err
			}
			if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY {
				retried++
				for _, k := range keys {
					held[k] = true
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

// acknowledge tells the store a write-back's outcome. A RETRY becomes
// FAILED after maxWriteBackAttempts; until then the write-back waits
// retryDelay before its next attempt. A FAILED flags write-back has its
// messages' flags read again, and any settled write-back the folders
// with flags to read again (decision 20). A write-back other than flags
// makes the cached view of the store stale.
func (w *account) acknowledge(ctx context.Context, wb *mailbusv1.WriteBack, ack *mailbusv1.AckWriteBackRequest) error {
	ack.WritebackId = wb.Id
	ack.LeaseToken = w.token
	if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY && wb.Attempts+1 >= maxWriteBackAttempts {
		ack.Outcome = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
	}
	if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_RETRY {
		if w.retryAt == nil {
			w.retryAt = map[string]time.Time{}
		}
		w.retryAt[wb.Id] = time.Now().Add(w.retryDelay(wb.Attempts + 1))
	} else {
		delete(w.retryAt, wb.Id)
	}
	if ack.Outcome == mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED {
		w.recheckTargets(wb)
	}
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	_, err := w.st.ingest.AckWriteBack(sctx, ack)
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
	return nil
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

// resyncNeeded says a write-back's folder changed UIDVALIDITY.
type resyncNeeded struct{ name string }

func (e *resyncNeeded) Error() string { return "imapsync: UIDVALIDITY of " + e.name + " changed" }

// writeBacksDue reports (and consumes) a write-back wake-up, or, once the
// write-back poll interval has passed, that a write-back is pending (one
// ListPendingWriteBacks with Max 1). With none pending the interval starts
// again: a long initial sync does not pause, and list its folder again on
// resuming, for nothing (decision 46). An error of the store pauses: the
// write-back pass reports it.
func (w *account) writeBacksDue(ctx context.Context) bool {
	select {
	case <-w.wb:
		return true
	default:
	}
	if time.Since(w.lastWriteBacks) < w.s.cfg.WriteBackPoll {
		return false
	}
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	resp, err := w.st.ingest.ListPendingWriteBacks(sctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: w.a.Id, Max: 1})
	if err != nil || len(resp.Writebacks) > 0 {
		return true
	}
	w.lastWriteBacks = time.Now()
	return false
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
