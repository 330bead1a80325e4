package imapsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// syncFolder is the session's step that brings one folder up to date,
// with device changes first (decision 4): one that came in meanwhile does
// not wait for this folder, and is on the server before its flags are
// read. A long initial sync pauses between chunks of FETCH batches when
// a write-back is pending (writeBacksDue): they are applied, and the sync
// goes on from its cursor (decision 6: a write-back waits at most a
// chunk).
func (w *account) syncFolder(ctx context.Context, f *folder) error {
	for resumed := false; ; resumed = true {
		if err := w.writeBacksBetween(ctx); err != nil {
			return err
		}
		done, err := w.syncFolderUntil(ctx, f, func() bool { return w.writeBacksDue(ctx) }, resumed)
		if err != nil || done {
			return err
		}
		if err := w.applyWriteBacks(ctx); err != nil {
			return err
		}
	}
}

// syncForWriteBack is the sync of a folder that a write-back needs (to
// find a message's new UID, or after a UIDVALIDITY change): it runs to
// its end and applies no write-backs, so that write-backs never run
// inside write-backs.
func (w *account) syncForWriteBack(ctx context.Context, f *folder) error {
	_, err := w.syncFolderUntil(ctx, f, nil, false)
	return err
}

// syncFolderUntil brings one folder up to date: a resync after a
// UIDVALIDITY change, the (rest of the) initial sync, then a delta. When
// pause (may be nil) says so between chunks of an initial sync, it stops
// there with done false; called again (resumed), it goes on from the
// cursor, and the metrics count the parts as one folder sync.
func (w *account) syncFolderUntil(ctx context.Context, f *folder, pause func() bool, resumed bool) (done bool, err error) {
	start := time.Now() // the check's time, once it succeeds (decision 22)
	sel, err := w.work.Select(ctx, f.name)
	if err != nil {
		if imapconn.IsNo(err) {
			// Gone meanwhile: the next LIST decides.
			w.relist = true
			return true, nil
		}
		return false, fmt.Errorf("imapsync: sync: %w", err)
	}
	st := f.st
	if st.Uidvalidity != 0 && st.Uidvalidity != sel.UIDValidity {
		w.log.Info("UIDVALIDITY changed; resyncing the folder", "folder", f.name, "old", st.Uidvalidity, "new", sel.UIDValidity)
		w.s.metrics.syncs.WithLabelValues("resync").Inc()
		if err := w.rebind(ctx, f, sel); err != nil {
			return false, err
		}
		f.st = &mailbusv1.MailboxSyncState{Uidvalidity: sel.UIDValidity}
		f.known, f.recheck, f.absent, f.rest = nil, nil, nil, nil
		if err := w.saveState(ctx, f); err != nil {
			return false, err
		}
		st = f.st
	}
	if st.Uidvalidity == 0 {
		st.Uidvalidity = sel.UIDValidity
	}
	if !st.InitialSyncDone {
		if !resumed {
			w.s.metrics.syncs.WithLabelValues("initial").Inc()
		}
		if done, err := w.initialSync(ctx, f, sel, pause, resumed); err != nil || !done {
			return false, err
		}
	}
	w.s.metrics.syncs.WithLabelValues("delta").Inc()
	if err := w.delta(ctx, f, sel); err != nil {
		return false, err
	}
	w.fresh.check(f.name, start)
	return true, nil
}

func (w *account) saveState(ctx context.Context, f *folder) error {
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	st := proto.Clone(f.st).(*mailbusv1.MailboxSyncState)
	st.Mailbox = nil
	for _, held := range f.recheck {
		st.SyncedHighestmodseq = min(st.SyncedHighestmodseq, held)
	}
	if f.saved != nil && proto.Equal(f.saved, st) {
		return nil
	}
	if _, err := w.st.ingest.SetMailboxSyncState(sctx, &mailbusv1.SetMailboxSyncStateRequest{MailboxId: f.id, State: st, LeaseToken: w.token}); err != nil {
		return fmt.Errorf("imapsync: save sync state of %s: %w", f.name, err)
	}
	f.saved = st
	return nil
}

// loadKnown reads the store's upstream identities of the folder. Those
// of another UIDVALIDITY are returned apart (left over from a resync).
func (w *account) loadKnown(ctx context.Context, f *folder) (stale map[uint32][]uint32, err error) {
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	stream, err := w.st.ingest.ListUpstreamIds(sctx, &mailbusv1.ListUpstreamIdsRequest{AccountId: w.a.Id, MailboxId: f.id})
	if err != nil {
		return nil, fmt.Errorf("imapsync: list upstream ids: %w", err)
	}
	f.known = map[uint32]*known{}
	stale = map[uint32][]uint32{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stale, nil
		}
		if err != nil {
			f.known = nil
			return nil, fmt.Errorf("imapsync: list upstream ids: %w", err)
		}
		for _, m := range resp.Messages {
			up := m.GetUpstream()
			if up.GetUidvalidity() != f.st.Uidvalidity {
				stale[up.GetUidvalidity()] = append(stale[up.GetUidvalidity()], up.GetUid())
				continue
			}
			f.known[up.GetUid()] = &known{id: m.MessageId, flags: m.Flags}
		}
	}
}

// apply sends upstream changes in bounded requests.
func (w *account) apply(ctx context.Context, changes []*mailbusv1.UpstreamChange) error {
	_, err := w.applyDeferring(ctx, changes)
	return err
}

// applyDeferring is apply that also returns the identities of messages
// whose flag changes the store did not apply, because a device's change
// to them is in flight (decision 4).
func (w *account) applyDeferring(ctx context.Context, changes []*mailbusv1.UpstreamChange) ([]*mailbusv1.UpstreamId, error) {
	var deferred []*mailbusv1.UpstreamId
	for len(changes) > 0 {
		n := min(len(changes), 5000)
		sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		resp, err := w.st.ingest.ApplyUpstreamChanges(sctx, &mailbusv1.ApplyUpstreamChangesRequest{AccountId: w.a.Id, Changes: changes[:n], LeaseToken: w.token})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("imapsync: apply upstream changes: %w", err)
		}
		deferred = append(deferred, resp.DeferredFlags...)
		changes = changes[n:]
	}
	return deferred, nil
}
