package imapsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ingest"
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

// syncFolder is the session's step that brings one folder up to date,
// with device changes first (decision 4): one that came in meanwhile does
// not wait for this folder, and is on the server before its flags are
// read. A long initial sync pauses between chunks of FETCH batches when
// write-backs are due: they are applied, and the sync goes on from its
// cursor (decision 6: a write-back waits at most a chunk).
func (w *account) syncFolder(ctx context.Context, f *folder) error {
	for {
		if err := w.writeBacksBetween(ctx); err != nil {
			return err
		}
		done, err := w.syncFolderUntil(ctx, f, w.writeBacksDue)
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
	_, err := w.syncFolderUntil(ctx, f, nil)
	return err
}

// syncFolderUntil brings one folder up to date: a resync after a
// UIDVALIDITY change, the (rest of the) initial sync, then a delta. When
// pause (may be nil) says so between chunks of an initial sync, it stops
// there with done false; called again, it goes on from the cursor.
func (w *account) syncFolderUntil(ctx context.Context, f *folder, pause func() bool) (done bool, err error) {
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
		f.known, f.recheck, f.absent = nil, nil, nil
		if err := w.saveState(ctx, f); err != nil {
			return false, err
		}
		st = f.st
	}
	if st.Uidvalidity == 0 {
		st.Uidvalidity = sel.UIDValidity
	}
	if !st.InitialSyncDone {
		w.s.metrics.syncs.WithLabelValues("initial").Inc()
		if done, err := w.initialSync(ctx, f, sel, pause); err != nil || !done {
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

// initialSync fetches the folder newest first. The cursor's
// synced_uidnext is the UIDNEXT when the sync began (newer mail is the
// delta's), synced_lowest_uid the lowest UID of the last committed batch:
// an interrupted sync goes on below it, and skips what the store has.
// When pause (may be nil) says so after a chunk of batches, it returns
// with done false, the cursor saved.
func (w *account) initialSync(ctx context.Context, f *folder, sel *imap.SelectData, pause func() bool) (done bool, err error) {
	st := f.st
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
	batches := newestFirst(uids, w.s.cfg.FetchBatch)
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

// delta syncs what changed since the cursor: new UIDs, flags, expunges.
func (w *account) delta(ctx context.Context, f *folder, sel *imap.SelectData) error {
	st := f.st
	if f.known == nil {
		if _, err := w.loadKnown(ctx, f); err != nil {
			return err
		}
	}
	// New mail.
	if sel.NumMessages > 0 && (sel.UIDNext == 0 || uint32(sel.UIDNext) > st.SyncedUidnext) {
		found, err := w.toFetch(ctx, f, st.SyncedUidnext, 0)
		if err != nil {
			return err
		}
		var uids []uint32
		for _, u := range found {
			if u >= st.SyncedUidnext {
				uids = append(uids, u)
			}
		}
		slices.Sort(uids)
		var batches [][]uint32
		for len(uids) > 0 {
			n := min(len(uids), w.s.cfg.FetchBatch)
			batches = append(batches, uids[:n])
			uids = uids[n:]
		}
		err = w.fetchIngest(ctx, f, batches, "delta", func(b []uint32) error {
			st.SyncedUidnext = max(st.SyncedUidnext, b[len(b)-1]+1)
			return w.saveState(ctx, f)
		})
		if err != nil {
			return err
		}
	}
	if next := uint32(sel.UIDNext); next > st.SyncedUidnext {
		st.SyncedUidnext = next
	}

	// Flags of known messages.
	var changes []*mailbusv1.UpstreamChange
	type flagRead struct {
		uid   uint32
		flags []string
	}
	var read []flagRead
	seen := map[uint32]bool{}
	consider := func(uid uint32, flags []imap.Flag) {
		k := f.known[uid]
		if k == nil {
			return
		}
		_, again := f.recheck[uid]
		if again {
			seen[uid] = true // only rechecked UIDs are looked up in seen
		}
		fl := normFlags(flagStrings(flags))
		if sameFlags(fl, k.flags) && !again {
			return
		}
		read = append(read, flagRead{uid, fl})
		changes = append(changes, &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_Flags{Flags: &mailbusv1.UpstreamFlags{
			Upstream: &mailbusv1.UpstreamId{MailboxId: f.id, Uidvalidity: st.Uidvalidity, Uid: uid}, Flags: fl,
		}}})
	}
	if len(f.known) > 0 && sel.NumMessages > 0 && (!w.condstore || st.SyncedHighestmodseq == 0 || sel.HighestModSeq != st.SyncedHighestmodseq) {
		var since uint64
		if w.condstore {
			since = st.SyncedHighestmodseq
		}
		if err := w.work.FetchFlags(ctx, f.name, imap.UIDSet{{Start: 1, Stop: 0}}, since, consider); err != nil {
			return err
		}
	}
	// Flags read while a write-back of the message was pending were
	// ignored by the store: read them again (CHANGEDSINCE may not show
	// them) and send them whatever the cache says.
	again := imap.UIDSet{}
	for u := range f.recheck {
		if f.known[u] == nil {
			delete(f.recheck, u)
		} else if !seen[u] {
			again.AddNum(imap.UID(u))
		}
	}
	if len(again) > 0 && sel.NumMessages > 0 {
		if err := w.work.FetchFlags(ctx, f.name, again, 0, consider); err != nil {
			return err
		}
	}

	// Expunges: only when the count differs from what the store knows
	// and the messages it does not hold (refused ones, left on the
	// server).
	if n, ok := w.work.SelectedMessages(); !ok || int(n) != len(f.known)+len(f.absent) {
		all, err := w.work.SearchUIDs(ctx, &imap.SearchCriteria{})
		if err != nil {
			return err
		}
		present := make(map[uint32]bool, len(all))
		absent := map[uint32]bool{}
		for _, u := range all {
			present[u] = true
			if f.known[u] == nil && u < st.SyncedUidnext {
				absent[u] = true
			}
		}
		f.absent = absent
		var gone []uint32
		for u := range f.known {
			if !present[u] {
				gone = append(gone, u)
				delete(f.known, u)
				delete(f.recheck, u) // no flags to read: it holds the cursor no more
			}
		}
		slices.Sort(gone)
		for len(gone) > 0 {
			n := min(len(gone), 5000)
			changes = append(changes, &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: f.id, Uidvalidity: st.Uidvalidity, Uids: gone[:n]}}})
			gone = gone[n:]
		}
	}
	deferred, err := w.applyDeferring(ctx, changes)
	if err != nil {
		return err
	}
	// The store ignores the flags of a message a device's change is in
	// flight for, and says which (in the same transaction, so no change
	// made meanwhile is missed): the cache must not claim it has them,
	// and they are read again at the next delta, which a settled
	// write-back asks for (markRecheckDirty). The rest are the store's
	// now.
	ignored := map[uint32]bool{}
	for _, up := range deferred {
		if up.GetMailboxId() == f.id && up.GetUidvalidity() == st.Uidvalidity {
			ignored[up.GetUid()] = true
		}
	}
	for _, r := range read {
		if ignored[r.uid] {
			f.addRecheck(r.uid, st.SyncedHighestmodseq)
			continue
		}
		delete(f.recheck, r.uid)
		if k := f.known[r.uid]; k != nil {
			k.flags = r.flags
		}
	}
	// While some are to be read again, the cursor the store keeps stays
	// where it was before they were read (addRecheck, saveState): a new
	// session, which does not have the recheck set, reads them again
	// with CHANGEDSINCE and compares them with the store's flags.
	st.SyncedHighestmodseq = sel.HighestModSeq
	return w.saveState(ctx, f)
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

// fetchIngest fetches batches of UIDs of f on the work connection and
// streams them into the store (fetchBodies); onBatch runs, in order, once
// the store has committed a batch (the cursor moves only over durable
// messages). Then it records what the store answered in f.
func (w *account) fetchIngest(ctx context.Context, f *folder, batches [][]uint32, kind string, onBatch func([]uint32) error) error {
	if len(batches) == 0 {
		return nil
	}
	ref := mailboxRef{id: f.id, name: f.name, uidvalidity: f.st.Uidvalidity}
	results, sentFlags, err := w.fetchBodies(ctx, w.work, ref, batches, kind, onBatch, func(n int, bytes int64) bool { w.fetched(ctx, n, bytes); return true })
	if err != nil {
		return err
	}
	for _, r := range results {
		if r.Error != "" {
			w.log.Warn("store refused a message; left on the server", "folder", f.name, "uid", r.GetUpstream().GetUid(), "err", r.Error)
			if r.GetUpstream().GetUidvalidity() == f.st.Uidvalidity {
				f.markAbsent(r.GetUpstream().GetUid())
			}
			continue
		}
		if f.known != nil && r.GetUpstream().GetUidvalidity() == f.st.Uidvalidity {
			u := r.GetUpstream().GetUid()
			f.known[u] = &known{id: r.MessageId, flags: sentFlags[u]}
			if !r.Created {
				// Stored before (the copy of a device's move or append,
				// adopted while that change is in flight): the store kept
				// its own flags, not these. The delta reads them again and
				// sends them.
				// In an initial sync the copy may be older than the
				// cursor: until then a new session reads every flag.
				held := f.st.SyncedHighestmodseq
				if !f.st.InitialSyncDone {
					held = 0
				}
				f.addRecheck(u, held)
			}
		}
	}
	return nil
}

// mailboxRef names a mailbox for fetchBodies.
type mailboxRef struct {
	id, name    string
	uidvalidity uint32
}

// fetchBodies fetches batches of UIDs (BODY.PEEK[], FLAGS, INTERNALDATE,
// RFC822.SIZE) of the mailbox selected on c and streams each body into
// the store as it arrives (pkg/ingest), while the store commits the
// previous batch. onBatch (may be nil) runs, in order, in the stream's
// receiver once the store has committed a batch; fetched runs after each
// batch is sent, and false from it ends the fetch there (the batches
// sent are committed, the others left). It returns the store's results and the flags sent, by
// UID. It touches no account or folder state: the prefetcher runs it on
// its own connection.
func (w *account) fetchBodies(ctx context.Context, c *imapconn.Conn, mb mailboxRef, batches [][]uint32, kind string, onBatch func([]uint32) error, fetched func(n int, bytes int64) bool) ([]*mailbusv1.IngestResult, map[uint32][]string, error) {
	type boundary struct {
		count int // messages sent up to the end of the batch
		uids  []uint32
	}
	var (
		mu        sync.Mutex
		bounds    []boundary
		acked     int
		sentFlags = map[uint32][]string{}
	)
	// The stream's receiver moves the cursor as batches are committed.
	onResults := func(rs []*mailbusv1.IngestResult) error {
		mu.Lock()
		acked += len(rs)
		var due []boundary
		for len(bounds) > 0 && bounds[0].count <= acked {
			due = append(due, bounds[0])
			bounds = bounds[1:]
		}
		mu.Unlock()
		for _, b := range due {
			if onBatch == nil {
				continue
			}
			if err := onBatch(b.uids); err != nil {
				return err
			}
		}
		return nil
	}
	ing, err := w.st.stream.Open(ctx, ingest.Options{OnResults: onResults})
	if err != nil {
		return nil, nil, fmt.Errorf("imapsync: %w", err)
	}
	defer ing.Close()
	body := &imap.FetchItemBodySection{Peek: true}
	opts := &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{body}}
	err = c.Do(ctx, func(g *imapconn.Guard) error {
		// One FETCH at a time: Dovecot runs pipelined FETCHes in parallel
		// and interleaves their responses, and go-imap hands each message
		// to its command's channel, so a second FETCH in flight could
		// stall the reader behind the first.
		for _, b := range batches {
			set := imap.UIDSet{}
			for _, u := range b {
				set.AddNum(imap.UID(u))
			}
			cmd := c.Client().Fetch(set, opts)
			var batchBytes int64
			for m := cmd.Next(); m != nil; m = cmd.Next() {
				g.Touch()
				fm := fetchedMessage{mb: mb, token: w.token, account: w.a.Id, flags: normFlags(flagStrings(nil))}
				n, sent, err := fm.ingest(g, m, ing, w.s.cfg.MaxMessageSize)
				if err != nil {
					c.Abandon()
					return err
				}
				if !sent {
					continue
				}
				w.s.metrics.messages.WithLabelValues(kind).Inc()
				w.s.metrics.bytes.Add(float64(n))
				batchBytes += n
				mu.Lock()
				sentFlags[fm.uid] = fm.flags
				mu.Unlock()
			}
			if err := cmd.Close(); err != nil {
				return err
			}
			mu.Lock()
			bounds = append(bounds, boundary{count: ing.Ended(), uids: b})
			mu.Unlock()
			if err := ing.Flush(); err != nil {
				return err
			}
			if !fetched(len(b), batchBytes) {
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("imapsync: fetch %s: %w", mb.name, err)
	}
	if err := ing.Finish(); err != nil {
		return nil, nil, fmt.Errorf("imapsync: %w", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(bounds) != 0 {
		return nil, nil, fmt.Errorf("imapsync: ingest: %d of %d messages acknowledged", acked, ing.Ended())
	}
	return ing.Take(), sentFlags, nil
}

// fetchedMessage is one message of a FETCH response on its way to the
// store.
type fetchedMessage struct {
	mb      mailboxRef
	account string
	token   uint64

	uid   uint32
	flags []string
	date  *timestamppb.Timestamp
	size  int64
	seen  metaItems // the items UID, FLAGS, INTERNALDATE seen
}

// metaItems is a set of the FETCH items a message's meta needs: the body
// streams only once all three came, whatever else (a repeated item) did.
type metaItems uint8

const (
	seenUID metaItems = 1 << iota
	seenFlags
	seenDate
	seenMeta = seenUID | seenFlags | seenDate
)

// ingest reads one message of a FETCH response and sends it on the
// stream. The body goes to the store as it arrives when the server sent
// UID, FLAGS and INTERNALDATE before it (Dovecot, and servers generally,
// do); a body that comes before them is held until the message's items
// end. It returns the body's size and whether a message was sent (not for
// a response without UID or body).
func (fm *fetchedMessage) ingest(g *imapconn.Guard, m *imapclient.FetchMessageData, ing *ingest.Stream, limit int64) (int64, bool, error) {
	var (
		held []byte
		got  bool
		n    int64
	)
	for it := m.Next(); it != nil; it = m.Next() {
		switch it := it.(type) {
		case imapclient.FetchItemDataUID:
			fm.uid = uint32(it.UID)
			fm.seen |= seenUID
		case imapclient.FetchItemDataFlags:
			fm.flags = normFlags(flagStrings(it.Flags))
			fm.seen |= seenFlags
		case imapclient.FetchItemDataInternalDate:
			fm.date = timestamppb.New(it.Time)
			fm.seen |= seenDate
		case imapclient.FetchItemDataRFC822Size:
			fm.size = it.Size
		case imapclient.FetchItemDataBodySection:
			if it.Literal == nil || got {
				continue
			}
			r, err := imapconn.Literal(g, it.Literal, it.Literal.Size(), limit)
			if err != nil {
				return 0, false, err
			}
			fm.size = max(fm.size, it.Literal.Size())
			got = true
			if fm.uid == 0 || fm.seen != seenMeta {
				if held, err = io.ReadAll(r); err != nil {
					return 0, false, err
				}
				continue
			}
			if n, err = ing.Send(fm.meta(), r); err != nil {
				return n, false, err
			}
			return n, true, drain(g, m, limit)
		}
	}
	if fm.uid == 0 || !got {
		return 0, false, nil
	}
	n, err := ing.Send(fm.meta(), bytes.NewReader(held))
	return n, err == nil, err
}

// drain reads the items after a message's body (none, from servers that
// send the body last); another literal is bounded as the body is.
func drain(g *imapconn.Guard, m *imapclient.FetchMessageData, limit int64) error {
	for it := m.Next(); it != nil; it = m.Next() {
		if bs, ok := it.(imapclient.FetchItemDataBodySection); ok && bs.Literal != nil {
			r, err := imapconn.Literal(g, bs.Literal, bs.Literal.Size(), limit)
			if err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (fm *fetchedMessage) meta() *mailbusv1.IngestMeta {
	return &mailbusv1.IngestMeta{
		AccountId: fm.account, Upstream: &mailbusv1.UpstreamId{MailboxId: fm.mb.id, Uidvalidity: fm.mb.uidvalidity, Uid: fm.uid},
		Flags: fm.flags, InternalDate: fm.date, Size: uint64(max(fm.size, 0)), LeaseToken: fm.token,
	}
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
