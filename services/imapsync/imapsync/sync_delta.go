package imapsync

import (
	"context"
	"slices"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// delta syncs what changed since the cursor: new UIDs, flags, expunges.
func (w *account) delta(ctx context.Context, f *folder, sel *imap.SelectData) error {
	st := f.st
	if f.known == nil {
		if _, err := w.loadKnown(ctx, f); err != nil {
			return err
		}
	}
	if err := w.deltaNewMail(ctx, f, sel); err != nil {
		return err
	}
	changes, read, err := w.deltaFlags(ctx, f, sel)
	if err != nil {
		return err
	}
	expunges, err := w.deltaExpunges(ctx, f)
	if err != nil {
		return err
	}
	deferred, err := w.applyDeferring(ctx, append(changes, expunges...))
	if err != nil {
		return err
	}
	settleFlags(f, read, deferred)
	// While some are to be read again, the cursor the store keeps stays
	// where it was before they were read (addRecheck, saveState): a new
	// session, which does not have the recheck set, reads them again
	// with CHANGEDSINCE and compares them with the store's flags.
	st.SyncedHighestmodseq = sel.HighestModSeq
	return w.saveState(ctx, f)
}

// deltaNewMail fetches the messages above the cursor's UIDNEXT into the
// store, moving the cursor over each committed batch.
func (w *account) deltaNewMail(ctx context.Context, f *folder, sel *imap.SelectData) error {
	st := f.st
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
	return nil
}

// flagRead is a known message's flags as read from the server.
type flagRead struct {
	uid   uint32
	flags []string
}

// deltaFlags reads the flags of known messages that changed since the
// cursor (all of them without CONDSTORE), and those of the recheck set,
// and returns the changes to send and what was read.
func (w *account) deltaFlags(ctx context.Context, f *folder, sel *imap.SelectData) ([]*mailbusv1.UpstreamChange, []flagRead, error) {
	st := f.st
	var changes []*mailbusv1.UpstreamChange
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
			return nil, nil, err
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
			return nil, nil, err
		}
	}
	return changes, read, nil
}

// deltaExpunges finds the known messages gone from the server, only when
// the count differs from what the store knows and the messages it does
// not hold (refused ones, left on the server), and forgets them.
func (w *account) deltaExpunges(ctx context.Context, f *folder) ([]*mailbusv1.UpstreamChange, error) {
	st := f.st
	if n, ok := w.work.SelectedMessages(); ok && int(n) == len(f.known)+len(f.absent) {
		return nil, nil
	}
	all, err := w.work.SearchUIDs(ctx, &imap.SearchCriteria{})
	if err != nil {
		return nil, err
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
	var changes []*mailbusv1.UpstreamChange
	for len(gone) > 0 {
		n := min(len(gone), 5000)
		changes = append(changes, &mailbusv1.UpstreamChange{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: f.id, Uidvalidity: st.Uidvalidity, Uids: gone[:n]}}})
		gone = gone[n:]
	}
	return changes, nil
}

// settleFlags records what the store took of the flags read. The store
// ignores the flags of a message a device's change is in flight for, and
// says which (deferred; in the same transaction, so no change made
// meanwhile is missed): the cache must not claim it has them, and they
// are read again at the next delta, which a settled write-back asks for
// (markRecheckDirty). The rest are the store's now.
func settleFlags(f *folder, read []flagRead, deferred []*mailbusv1.UpstreamId) {
	st := f.st
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
}
