package imapgw

import (
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/pkg/imapserver"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

var _ imapserver.SessionQResync = (*session)(nil)

// Vanished implements imapserver.SessionQResync: the UIDs of a set that
// were expunged since a mod-sequence, for VANISHED (EARLIER) after SELECT
// (QRESYNC ...) and UID FETCH (CHANGEDSINCE n VANISHED). The store keeps
// no tombstones; the account's change log names the deletions and moves
// out after the mod-sequence as long as it reaches back to it
// (replayVanished). Otherwise the answer is every UID of the set below
// UIDNEXT that the view does not hold: the ones expunged since, and
// also ones expunged before, moved away or never used, which RFC 7162
// allows (section 3.2.6; the client ignores UIDs it does not know). When the
// mod-sequence is not below the state up to which the view applied
// every change (delivered: every UID missing from the view left at or
// below it) nor below the session's own last EXPUNGE or MOVE, no
// message of the view left after it, and the answer is empty (decision
// 43). Not the HIGHESTMODSEQ announced at SELECT: the view applies
// expunges after it, which UID FETCH (CHANGEDSINCE n VANISHED) with n
// at that value must report.
func (s *session) Vanished(uids imap.UIDSet, since uint64) (imap.UIDSet, error) {
	sel := s.sel
	if sel == nil || since >= max(sel.delivered, sel.ownRemoval) {
		return nil, nil
	}
	top := sel.uidNext() - 1 // the largest UID the mailbox has handed out
	// "*" is taken as top, not as the largest UID in use: with the
	// latter, 1:* (also the default when the client sends no known-uids)
	// would never report the expunge of the newest messages. UIDs the
	// client did not have are allowed (RFC 7162 section 3.2.6).
	star := top
	if gone, ok := s.replayVanished(since); ok {
		return vanishedOf(sel, uids, gone, star, top), nil
	}
	var out imap.UIDSet
	for _, r := range uids {
		start, stop := uint32(r.Start), uint32(r.Stop)
		if start == 0 {
			start = star
		}
		if stop == 0 {
			stop = star
		}
		if start > stop {
			start, stop = stop, start
		}
		start, stop = max(start, 1), min(stop, top)
		if start > stop {
			continue
		}
		// The gaps between the view's UIDs within start:stop.
		i := sort.Search(len(sel.msgs), func(i int) bool { return sel.msgs[i].uid >= start })
		next := start
		for ; i < len(sel.msgs) && sel.msgs[i].uid <= stop; i++ {
			if u := sel.msgs[i].uid; u > next {
				out.AddRange(imap.UID(next), imap.UID(u-1))
			}
			next = sel.msgs[i].uid + 1
		}
		if next <= stop {
			out.AddRange(imap.UID(next), imap.UID(stop))
		}
	}
	return out, nil
}

// maxVanishedReplay is the most events of the account's change log
// replayVanished reads; past it Vanished answers with the gaps.
const maxVanishedReplay = 10000

// replayVanished reads the account's change log after since and returns
// the UIDs of the selected mailbox its deletions and moves out name.
// ok is false when the log cannot answer exactly: it no longer reaches
// back to since (OUT_OF_RANGE), it holds more than maxVanishedReplay
// events after since, or an event that may concern the mailbox names no
// UID (decision 43).
func (s *session) replayVanished(since uint64) (uids []uint32, ok bool) {
	ctx, cancel := s.call()
	defer cancel()
	stream, err := mailbusv1.NewSyncServiceClient(s.g.cfg.StoreConn).WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: s.account.Id, SinceState: since, SkipStatus: true}, s.creds)
	if err != nil {
		return nil, false
	}
	mbox := s.sel.mbox.Id
	for n := 0; ; n++ {
		resp, err := stream.Recv()
		if err != nil {
			return nil, false
		}
		if resp.CaughtUp {
			return uids, true
		}
		if n >= maxVanishedReplay {
			return nil, false
		}
		switch p := resp.GetEvent().GetPayload().(type) {
		case *mailbusv1.Event_MessageDeleted:
			d := p.MessageDeleted
			if d.MailboxId == "" || (d.MailboxId == mbox && d.ImapUid == 0) {
				return nil, false // an older event: its mailbox or UID is unknown
			}
			if d.MailboxId == mbox {
				uids = append(uids, d.ImapUid)
			}
		case *mailbusv1.Event_MessageUpdated:
			u := p.MessageUpdated
			if u.PreviousMailboxId != mbox || u.GetMessage().GetMailboxId() == mbox {
				continue
			}
			if u.PreviousImapUid == 0 {
				return nil, false
			}
			uids = append(uids, u.PreviousImapUid)
		}
	}
}

// vanishedOf is the answer of Vanished from the UIDs the change log
// names gone: those of the client's set (star standing for "*"), up to
// top, that the view does not hold (a UID the view still holds is one
// whose removal the view has not applied yet; the client is told when
// it is).
func vanishedOf(sel *selected, set imap.UIDSet, gone []uint32, star, top uint32) imap.UIDSet {
	slices.Sort(gone)
	var out imap.UIDSet
	for _, uid := range slices.Compact(gone) {
		if uid > top || !uidContains(set, uid, star) {
			continue
		}
		if i := sort.Search(len(sel.msgs), func(i int) bool { return sel.msgs[i].uid >= uid }); i < len(sel.msgs) && sel.msgs[i].uid == uid {
			continue
		}
		out.AddNum(imap.UID(uid))
	}
	return out
}
