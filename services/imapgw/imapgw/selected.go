package imapgw

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/pkg/imapserver"
	"google.golang.org/grpc"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// message is one message of the client's view of its selected mailbox:
// 64 bytes and the id's, since a gateway holds one per message of every
// selected mailbox of every session (flag lists are shared, see
// flagSets).
type message struct {
	id    string
	flags []string
	date  int64 // the internal date, Unix seconds (IMAP's precision)
	// state is the account state at which the message was last changed
	// (MessageSummary.state) as the view knows it: an event at or below
	// it is older than what the view has and is ignored.
	state uint64
	uid   uint32
	size  uint32
}

func newMessage(m *mailbusv1.MessageSummary, in *flagSets) message {
	return message{uid: m.ImapUid, id: m.Id, flags: in.intern(m.Flags), size: uint32(min(m.Size, 1<<32-1)), date: m.GetInternalDate().GetSeconds(), state: m.State}
}

// modSeq is the message's MODSEQ (RFC 7162): the account state at which
// it last changed, as the view knows it; at least 1 (mod-sequences are
// positive).
func (m *message) modSeq() uint64 { return max(m.state, 1) }

// internalDate is the message's INTERNALDATE.
func (m *message) internalDate() time.Time { return time.Unix(m.date, 0).UTC() }

// flagSets interns flag lists for all the sessions of a gateway: most
// messages have one of a few (none, \\Seen, \\Seen \\Answered, ...), so the
// views share them. The lists are never changed in place (a change
// replaces the list). Past maxFlagSets distinct lists, new ones are not
// interned.
type flagSets struct {
	mu   sync.Mutex
	sets map[string][]string
}

const maxFlagSets = 10000

func (in *flagSets) intern(flags []string) []string {
	if len(flags) == 0 {
		return nil
	}
	key := strings.Join(flags, " ")
	in.mu.Lock()
	defer in.mu.Unlock()
	if f, ok := in.sets[key]; ok {
		return f
	}
	if len(in.sets) >= maxFlagSets {
		return flags
	}
	if in.sets == nil {
		in.sets = map[string][]string{}
	}
	f := slices.Clone(flags)
	in.sets[key] = f
	return f
}

// selected is the client's view of its selected mailbox: the messages in
// sequence order (which is UID order), as the client was last told. Events
// of the account change it only as the session writes the matching
// untagged responses (EXISTS, EXPUNGE, FETCH FLAGS), so that sequence
// numbers stay what the client thinks they are.
type selected struct {
	mbox     *mailbusv1.Mailbox
	readOnly bool
	msgs     []message
	// maxUID is the highest UID the view has held: a created event with a
	// UID at or below it is one the list already had (or a message since
	// deleted), never a new one, since UIDs only grow.
	maxUID uint32
	sub    *subscription
	flags  *flagSets
	// highestModSeq is the HIGHESTMODSEQ announced at SELECT: the account
	// state at which the listing began (decision 43).
	highestModSeq uint64
	// delivered is the account state up to which the client was told
	// every change of the mailbox: the listing's state, then the state
	// of the account's events the view applied (all of those up to it).
	// The view's own changes (STORE, a FETCH setting \Seen) and later
	// pages of a listing can hold higher MODSEQs; a client that saw one
	// is told HIGHESTMODSEQ delivered before the tagged response
	// (tellHighestModSeq, decision 43).
	delivered uint64
	// told is the highest MODSEQ written to the client since the last
	// poll (which precedes every tagged response that may follow one).
	told uint64
	// expunged is set by EXPUNGE and MOVE: the next poll tells
	// HIGHESTMODSEQ (RFC 7162 section 3.2.7), after waiting for the
	// events up to ownRemoval, so that the value passes the expunge.
	expunged bool
	// ownRemoval is the account state after the session's last EXPUNGE
	// or MOVE that took messages out of the view.
	ownRemoval uint64
	// pendingExists is set when messages were added to the view but the
	// client was not told the new count yet.
	pendingExists bool
	// resyncFailed is set when the last listing after lost events failed:
	// IDLE tries again after resyncRetry.
	resyncFailed bool
}

// resyncRetry is how long IDLE waits before listing the mailbox again
// after a failed listing.
const resyncRetry = 5 * time.Second

// listAll reads every message of a mailbox in UID order, with the
// account state of its first page: the listing reflects every change up
// to that state (each page is read at that state or a later one).
func listAll(ctx context.Context, c mailbusv1.MailboxServiceClient, mailboxID string, creds grpc.CallOption, in *flagSets) ([]message, uint64, error) {
	var out []message
	var state uint64
	token := ""
	for first := true; ; first = false {
		resp, err := c.ListMessages(ctx, &mailbusv1.ListMessagesRequest{
			MailboxId: mailboxID, PageSize: 1000, PageToken: token, Order: mailbusv1.MessageOrder_MESSAGE_ORDER_IMAP_UID,
		}, creds)
		if err != nil {
			return nil, 0, err
		}
		if first {
			state = resp.State
		}
		for _, m := range resp.Messages {
			out = append(out, newMessage(m, in))
		}
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	// The store's order; sorted again so that the view's invariant does
	// not depend on it.
	sort.SliceStable(out, func(i, j int) bool { return out[i].uid < out[j].uid })
	// Held as long as the mailbox is selected: without append's spare
	// room (up to a quarter more).
	if cap(out) > len(out) {
		out = slices.Clone(out)
	}
	return out, state, nil
}

func newSelected(mbox *mailbusv1.Mailbox, msgs []message, readOnly bool, sub *subscription, flags *flagSets) *selected {
	s := &selected{mbox: mbox, readOnly: readOnly, msgs: slices.Clip(msgs), sub: sub, flags: flags}
	for _, m := range msgs {
		s.maxUID = max(s.maxUID, m.uid)
	}
	return s
}

// seqOf returns the 1-based sequence number of a message of the view, 0
// when it is not in it.
func (s *selected) seqOf(m *message) uint32 {
	if i := s.indexUID(m.uid, m.id); i >= 0 {
		return uint32(i + 1)
	}
	return 0
}

// indexUID finds a message by UID (binary search: the view is in UID
// order) and checks its id; -1 when it is not in the view.
func (s *selected) indexUID(uid uint32, id string) int {
	i := sort.Search(len(s.msgs), func(i int) bool { return s.msgs[i].uid >= uid })
	if i < len(s.msgs) && s.msgs[i].uid == uid && s.msgs[i].id == id {
		return i
	}
	return -1
}

// index finds a message by id alone (a deleted or moved message's event
// has no UID of this mailbox); -1 when it is not in the view.
func (s *selected) index(id string) int {
	return slices.IndexFunc(s.msgs, func(m message) bool { return m.id == id })
}

// find returns the message with an id, nil when it is not in the view; the
// pointer is valid until the view changes.
func (s *selected) find(id string) *message {
	if i := s.index(id); i >= 0 {
		return &s.msgs[i]
	}
	return nil
}

// findSummary returns the message a store summary of this mailbox
// describes (by its UID and id), nil when it is not in the view or the
// summary is of another mailbox.
func (s *selected) findSummary(m *mailbusv1.MessageSummary) *message {
	if m.GetMailboxId() == s.mbox.Id {
		if i := s.indexUID(m.ImapUid, m.Id); i >= 0 {
			return &s.msgs[i]
		}
	}
	return nil
}

// gone returns the index of the message an event takes out of the view,
// -1 when none: a deletion or a move out names the UID the message had
// here (MessageDeleted.imap_uid, MessageUpdated.previous_imap_uid), so an
// old event about an earlier stay of the message in this mailbox does not
// remove its current one. Without a UID (0), a message of the view with
// the id and an older state is meant.
func (s *selected) gone(ev *mailbusv1.Event) int {
	byID := func(id string) int {
		if i := s.index(id); i >= 0 && ev.State > s.msgs[i].state {
			return i
		}
		return -1
	}
	switch p := ev.Payload.(type) {
	case *mailbusv1.Event_MessageDeleted:
		d := p.MessageDeleted
		if d.MailboxId != "" && d.MailboxId != s.mbox.Id {
			return -1
		}
		if d.ImapUid != 0 {
			return s.indexUID(d.ImapUid, d.MessageId)
		}
		return byID(d.MessageId)
	case *mailbusv1.Event_MessageUpdated:
		u := p.MessageUpdated
		m := u.GetMessage()
		if u.PreviousMailboxId == s.mbox.Id && m.GetMailboxId() != s.mbox.Id {
			if u.PreviousImapUid != 0 {
				return s.indexUID(u.PreviousImapUid, m.GetId())
			}
			return byID(m.GetId())
		}
		if m.GetMailboxId() != s.mbox.Id {
			// A change of a message elsewhere that the view still has: a
			// move out the view missed, unless the view is newer.
			return byID(m.GetId())
		}
	}
	return -1
}

// uidNext is the UIDNEXT to announce.
func (s *selected) uidNext() uint32 {
	return max(s.mbox.ImapUidnext, s.maxUID+1)
}

// add appends a message placed in the mailbox after everything in the
// view; false when its UID says it is not new.
func (s *selected) add(m message) bool {
	if m.uid <= s.maxUID || s.index(m.id) >= 0 {
		return false
	}
	s.msgs = append(s.msgs, m)
	s.maxUID = m.uid
	s.pendingExists = true
	return true
}

func (s *selected) flushExists(w *imapserver.UpdateWriter) error {
	if !s.pendingExists {
		return nil
	}
	s.pendingExists = false
	return w.WriteNumMessages(uint32(len(s.msgs)))
}

// poll applies the queued events of the account to the view and tells the
// client. Without allowExpunge (during FETCH, STORE and SEARCH), it stops
// at the first event that would expunge a message and keeps the rest for
// later.
func (s *selected) poll(ctx context.Context, sess *session, w *imapserver.UpdateWriter, allowExpunge bool) error {
	evs, resync, seen := s.sub.takeSeen()
	if resync {
		if !allowExpunge {
			s.sub.lost()
			return nil
		}
		s.resyncFailed = false
		if err := s.resync(ctx, sess, w); err != nil {
			var ie *imap.Error
			if errors.As(err, &ie) {
				// The listing failed (a store error): the view stays as
				// the client knows it, the next poll lists again (an IDLE
				// after resyncRetry). Returning the error would end the
				// connection.
				sess.g.log.Warn("imap gateway: listing the selected mailbox again failed; will retry", "mailbox", s.mbox.Id, "err", err)
				s.sub.retry()
				s.resyncFailed = true
				return s.flushExists(w)
			}
			return err // writing to the client failed
		}
		return s.flushExists(w)
	}
	for i, ev := range evs {
		if !allowExpunge && s.expunges(ev) {
			s.sub.putBack(evs[i:])
			// Every change below the one held back was applied.
			s.delivered = max(s.delivered, ev.State-1)
			return s.flushExists(w)
		}
		if err := s.apply(ev, w); err != nil {
			return err
		}
	}
	s.delivered = max(s.delivered, seen)
	return s.flushExists(w)
}

// tellModSeq records a MODSEQ written to the client.
func (s *selected) tellModSeq(modSeq uint64) { s.told = max(s.told, modSeq) }

// tellHighestModSeq ends a poll, which precedes the tagged response of a
// command: when the command's responses carried a MODSEQ above
// delivered, or it expunged, it writes `* OK [HIGHESTMODSEQ delivered]`,
// which the client must adopt instead of the highest MODSEQ it saw (RFC
// 7162 section 6). Otherwise a client that adopted the MODSEQ of its own
// STORE while another device's earlier change was still held back (an
// expunge withheld during STORE, FETCH and SEARCH holds back every event
// after it) would skip that change at its next CHANGEDSINCE or QRESYNC.
func (s *selected) tellHighestModSeq(w *imapserver.UpdateWriter) error {
	told, expunged := s.told, s.expunged
	s.told, s.expunged = 0, false
	if told > s.delivered || expunged {
		return w.WriteHighestModSeq(s.delivered)
	}
	return nil
}

// expunges reports whether an event takes a message out of the view.
func (s *selected) expunges(ev *mailbusv1.Event) bool {
	switch p := ev.Payload.(type) {
	case *mailbusv1.Event_MessageDeleted, *mailbusv1.Event_MessageUpdated:
		return s.gone(ev) >= 0
	case *mailbusv1.Event_MailboxDeleted:
		return p.MailboxDeleted.MailboxId == s.mbox.Id && len(s.msgs) > 0
	}
	return false
}

// apply applies one event; it is idempotent, so events the list already
// reflected change nothing.
func (s *selected) apply(ev *mailbusv1.Event, w *imapserver.UpdateWriter) error {
	switch p := ev.Payload.(type) {
	case *mailbusv1.Event_MessageCreated:
		if m := p.MessageCreated.GetMessage(); m.GetMailboxId() == s.mbox.Id {
			s.add(newMessage(m, s.flags))
		}
	case *mailbusv1.Event_MessageUpdated:
		m := p.MessageUpdated.GetMessage()
		if m.GetMailboxId() != s.mbox.Id {
			return s.expungeAt(w, s.gone(ev))
		}
		if cur := s.findSummary(m); cur != nil {
			if m.State <= cur.state {
				return nil // the view is as new or newer
			}
			cur.state = m.State
			if slices.Equal(cur.flags, m.Flags) {
				return nil
			}
			cur.flags = s.flags.intern(m.Flags)
			if err := s.flushExists(w); err != nil {
				return err
			}
			s.tellModSeq(cur.modSeq())
			return w.WriteMessageFlagsModSeq(s.seqOf(cur), imap.UID(cur.uid), imapFlags(cur.flags), cur.modSeq())
		}
		s.add(newMessage(m, s.flags)) // moved in (add ignores UIDs not new)
	case *mailbusv1.Event_MessageDeleted:
		return s.expungeAt(w, s.gone(ev))
	case *mailbusv1.Event_MailboxDeleted:
		if p.MailboxDeleted.MailboxId == s.mbox.Id {
			for len(s.msgs) > 0 {
				if err := s.expunge(w, s.msgs[len(s.msgs)-1].id); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// expungeAt takes message i (none when -1) out of the view and tells the
// client.
func (s *selected) expungeAt(w *imapserver.UpdateWriter, i int) error {
	if i < 0 {
		return nil
	}
	if err := s.flushExists(w); err != nil {
		return err
	}
	uid := s.msgs[i].uid
	s.msgs = slices.Delete(s.msgs, i, i+1)
	return w.WriteExpungeUID(uint32(i+1), imap.UID(uid))
}

func (s *selected) expunge(w *imapserver.UpdateWriter, id string) error {
	if s.index(id) < 0 {
		return nil
	}
	if err := s.flushExists(w); err != nil {
		return err
	}
	return s.expungeAt(w, s.index(id))
}

// resync lists the mailbox again after lost events and tells the client
// the difference.
func (s *selected) resync(ctx context.Context, sess *session, w *imapserver.UpdateWriter) error {
	msgs, state, err := listAll(ctx, sess.mailboxes(), s.mbox.Id, sess.creds, s.flags)
	if err != nil {
		return imapError(err, "list the mailbox")
	}
	// The listing reflects every change up to its first page's state
	// (later pages may hold higher MODSEQs: tellModSeq).
	s.delivered = max(s.delivered, state)
	now := make(map[string]*message, len(msgs))
	for i := range msgs {
		now[msgs[i].id] = &msgs[i]
	}
	for i := len(s.msgs) - 1; i >= 0; i-- {
		if m := s.msgs[i]; now[m.id] == nil || now[m.id].uid != m.uid {
			if err := s.expunge(w, m.id); err != nil {
				return err
			}
		}
	}
	for _, m := range msgs {
		if cur := s.find(m.id); cur != nil {
			cur.state = m.state
			if !slices.Equal(cur.flags, m.flags) {
				cur.flags = m.flags
				s.tellModSeq(cur.modSeq())
				if err := w.WriteMessageFlagsModSeq(s.seqOf(cur), imap.UID(cur.uid), imapFlags(cur.flags), cur.modSeq()); err != nil {
					return err
				}
			}
			continue
		}
		s.add(m)
	}
	return nil
}

// resolve returns the messages of the view a sequence or UID set names, in
// sequence order. "*" is the last message; a UID range with "*" includes
// the last message even when its UID is below the range's start (RFC
// 3501 section 6.4.8).
func (s *selected) resolve(set imap.NumSet) []*message {
	var out []*message
	n := len(s.msgs)
	if n == 0 {
		return nil
	}
	switch set := set.(type) {
	case imap.SeqSet:
		for i := range s.msgs {
			if seqContains(set, uint32(i+1), uint32(n)) {
				out = append(out, &s.msgs[i])
			}
		}
	case imap.UIDSet:
		last := s.msgs[n-1].uid
		for i := range s.msgs {
			if uidContains(set, s.msgs[i].uid, last) {
				out = append(out, &s.msgs[i])
			}
		}
	}
	return out
}

func seqContains(set imap.SeqSet, num, star uint32) bool {
	for _, r := range set {
		if inRange(r.Start, r.Stop, num, star) {
			return true
		}
	}
	return false
}

func uidContains(set imap.UIDSet, uid, star uint32) bool {
	for _, r := range set {
		if inRange(uint32(r.Start), uint32(r.Stop), uid, star) {
			return true
		}
	}
	return false
}

// inRange reports whether num is in start:stop, 0 standing for "*" (the
// largest number in use) and the ends in either order.
func inRange(start, stop, num, star uint32) bool {
	if start == 0 {
		start = star
	}
	if stop == 0 {
		stop = star
	}
	if start > stop {
		start, stop = stop, start
	}
	return start <= num && num <= stop
}

func imapFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}
