package imapsync

import (
	"context"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

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
