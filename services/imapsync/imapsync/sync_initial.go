package imapsync

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// initialSyncs runs the initial sync of every folder that has not finished
// one, INBOX first, reporting progress in account.status.
func (w *account) initialSyncs(ctx context.Context) error {
	var todo []*folder
	for _, f := range w.ordered() {
		if !f.st.InitialSyncDone || f.st.Uidvalidity == 0 {
			todo = append(todo, f)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	p := &mailbusv1.SyncProgress{FoldersTotal: uint32(len(todo))}
	// The folders' sizes (RFC 8438 STATUS SIZE, also in IMAP4rev2) give
	// the bytes to download, for a rate and a time left by bytes;
	// without it the total stays unknown (0).
	sizes := w.work.Caps().Has(imap.CapStatusSize) || w.work.Caps().Has(imap.CapIMAP4rev2)
	var bytesTotal uint64
	for _, f := range todo {
		sd, err := w.work.Status(ctx, f.name, &imap.StatusOptions{NumMessages: true, Size: sizes})
		if err != nil && !imapconn.IsNo(err) {
			return fmt.Errorf("imapsync: initial sync: %w", err)
		}
		if err == nil && sd.NumMessages != nil {
			p.MessagesTotal += uint64(*sd.NumMessages)
		}
		if err != nil || sd.Size == nil {
			sizes = false
		} else {
			bytesTotal += uint64(max(*sd.Size, 0))
		}
	}
	if sizes {
		p.BytesTotal = bytesTotal
	}
	w.progress = p
	w.lastProgress = time.Time{}
	w.report(ctx, mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC, "")
	// A second connection, where the budgets allow and the sync is long
	// enough, fetches folders from the other end of the list meanwhile
	// (prefetch.go).
	w.prefetch = w.startPrefetch(ctx, todo, p.MessagesTotal)
	defer func() {
		w.prefetch.stop()
		w.prefetch.progress(p)
		w.prefetch = nil
	}()
	for _, f := range todo {
		w.prefetch.take(ctx, f)
		if err := ctx.Err(); err != nil {
			// The session was aborted meanwhile (the prefetcher's
			// STALE_LEASE): not one more command.
			return err
		}
		if err := w.syncFolder(ctx, f); err != nil {
			return err
		}
		p.FoldersDone++
		w.prefetch.progress(p)
		w.report(ctx, mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC, "")
	}
	return nil
}

// initialSync fetches the folder newest first. The cursor's
// synced_uidnext is the UIDNEXT when the sync began (newer mail is the
// delta's), synced_lowest_uid the lowest UID of the last committed batch:
// an interrupted sync goes on below it, and skips what the store has.
// When pause (may be nil) says so after a chunk of batches, it returns
// with done false, the cursor saved and the batches left on the folder.
// A part that resumes a paused sync (resumed) goes on with the batches
// the pause left (f.rest) when the folder's UIDVALIDITY is the same: it
// neither lists the folder again nor, unless a write-back moved messages
// meanwhile, reads the store's identities again.
func (w *account) initialSync(ctx context.Context, f *folder, sel *imap.SelectData, pause func() bool, resumed bool) (done bool, err error) {
	st := f.st
	rest := f.rest
	f.rest = nil
	if rest != nil && resumed && rest.uidvalidity == sel.UIDValidity && st.Uidvalidity == sel.UIDValidity && st.SyncedUidnext != 0 {
		return w.initialSyncRest(ctx, f, rest, pause)
	}
	stale, err := w.loadKnown(ctx, f)
	if err != nil {
		return false, err
	}
	if st.SyncedUidnext == 0 {
		st.SyncedUidnext = uint32(sel.UIDNext)
		// Messages fetched now come with their flags, so CHANGEDSINCE
		// the HIGHESTMODSEQ of now catches what changes later. Messages
		// the store already has under this UIDVALIDITY were rebound
		// after a UIDVALIDITY change, with the flags of the old ones:
		// then the first delta reads every message's flags (from 0).
		if len(f.known) == 0 {
			st.SyncedHighestmodseq = sel.HighestModSeq
		}
		if st.SyncedUidnext == 0 {
			st.SyncedUidnext = 1
		}
		if err := w.saveState(ctx, f); err != nil {
			return false, err
		}
	}
	upper := st.SyncedUidnext - 1
	if st.SyncedLowestUid != 0 {
		upper = st.SyncedLowestUid - 1
	}
	var uids []uint32
	if upper >= 1 && sel.NumMessages > 0 {
		all, err := w.toFetch(ctx, f, 1, upper)
		if err != nil {
			return false, err
		}
		for _, u := range all {
			if u <= upper {
				uids = append(uids, u)
			}
		}
	}
	return w.initialSyncRest(ctx, f, &initialRest{uidvalidity: sel.UIDValidity, batches: newestFirst(uids, w.s.cfg.FetchBatch), stale: stale}, pause)
}

// initialRest is what an initial sync has left: the batches to fetch,
// newest first, of the folder under uidvalidity, and the store's
// messages of earlier UIDVALIDITYs to expunge at its end.
type initialRest struct {
	uidvalidity uint32
	batches     [][]uint32
	stale       map[uint32][]uint32
}

// initialSyncRest fetches the batches of rest, pausing between chunks
// when pause says so (with rest kept on the folder), and ends the initial
// sync.
func (w *account) initialSyncRest(ctx context.Context, f *folder, rest *initialRest, pause func() bool) (done bool, err error) {
	st := f.st
	stale := rest.stale
	if f.known == nil {
		// A write-back moved, deleted or appended messages during the
		// pause: the store's view is read again.
		if stale, err = w.loadKnown(ctx, f); err != nil {
			return false, err
		}
	}
	var batches [][]uint32
	for _, b := range rest.batches {
		b = slices.DeleteFunc(slices.Clone(b), func(u uint32) bool { return f.known[u] != nil })
		if len(b) > 0 {
			batches = append(batches, b)
		}
	}
	// A long initial sync lets device changes through between chunks of
	// batches: write-backs do not wait for the whole folder.
	for len(batches) > 0 {
		n := min(len(batches), initialChunkBatches)
		err = w.fetchIngest(ctx, f, batches[:n], "initial", func(b []uint32) error {
			st.SyncedLowestUid = b[0]
			return w.saveState(ctx, f)
		})
		if err != nil {
			return false, err
		}
		batches = batches[n:]
		if len(batches) > 0 && pause != nil && pause() {
			f.rest = &initialRest{uidvalidity: rest.uidvalidity, batches: batches, stale: stale}
			return false, nil
		}
	}
	st.InitialSyncDone = true
	if err := w.saveState(ctx, f); err != nil {
		return false, err
	}
	// Messages of an earlier UIDVALIDITY are gone: the folder was
	// resynced under the new one.
	var changes []*mailbusv1.UpstreamChange
	for uv, list := range stale {
		for len(list) > 0 {
			n := min(len(list), 5000)
			changes = append(changes, &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: f.id, Uidvalidity: uv, Uids: list[:n]}}})
			list = list[n:]
		}
	}
	return true, w.apply(ctx, changes)
}

// toFetch lists the UIDs from lo to hi (0: the last) that the store does
// not have, with UID FETCH RFC822.SIZE: a message larger than
// Config.MaxMessageSize is left on the server (and counted as absent, so
// that the expunge check still adds up) without downloading its body.
func (w *account) toFetch(ctx context.Context, f *folder, lo, hi uint32) ([]uint32, error) {
	uids, large, err := w.work.ListUIDs(ctx, f.name, lo, hi, func(u uint32) bool { return f.known[u] != nil }, w.s.cfg.MaxMessageSize)
	if err != nil {
		return nil, err
	}
	for _, u := range large {
		w.log.Warn("message larger than the limit; left on the server", "folder", f.name, "uid", u, "limit", w.s.cfg.MaxMessageSize)
		f.markAbsent(u)
	}
	return uids, nil
}

// newestFirst cuts uids into batches of at most n, the newest batch
// first, each in ascending order (the server answers so anyway).
func newestFirst(uids []uint32, n int) [][]uint32 {
	uids = slices.Clone(uids)
	slices.Sort(uids)
	slices.Reverse(uids)
	var batches [][]uint32
	for len(uids) > 0 {
		k := min(len(uids), n)
		b := slices.Clone(uids[:k])
		slices.Reverse(b)
		batches = append(batches, b)
		uids = uids[k:]
	}
	return batches
}

// fetched counts messages and bytes of an initial sync in the progress,
// and reports it at most every Config.ProgressInterval.
func (w *account) fetched(ctx context.Context, n int, bytes int64) {
	p := w.progress
	if p == nil {
		return
	}
	w.prefetch.progress(p)
	p.MessagesDone += uint64(n)
	p.BytesDone += uint64(max(bytes, 0))
	if time.Since(w.lastProgress) >= w.s.cfg.ProgressInterval {
		w.lastProgress = time.Now()
		w.report(ctx, mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC, "")
	}
}
