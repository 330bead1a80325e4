package imapgw

import (
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/pkg/imapserver"
)

var _ imapserver.SessionQResync = (*session)(nil)

// Vanished implements imapserver.SessionQResync: the UIDs of a set that
// were expunged since a mod-sequence, for VANISHED (EARLIER) after SELECT
// (QRESYNC ...) and UID FETCH (CHANGEDSINCE n VANISHED). The store keeps
// no tombstones, so the answer is every UID of the set below UIDNEXT
// that the view does not hold: the ones expunged since, and also ones
// expunged before, moved away or never used, which RFC 7162 allows
// (section 3.2.6; the client ignores UIDs it does not know). When the
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
