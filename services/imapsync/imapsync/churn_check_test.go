package imapsync_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// churnMessage is a message as one side has it.
type churnMessage struct {
	id     string // store message id (store side)
	folder string
	uid    uint32 // the server's UID (server side), or the store's upstream UID
	flags  []string
}

func (m churnMessage) String() string {
	if m.id != "" {
		return fmt.Sprintf("store %s in %s (UID %d) %v", m.id, m.folder, m.uid, m.flags)
	}
	return fmt.Sprintf("server %s UID %d %v", m.folder, m.uid, m.flags)
}

// storeMessages lists the store's messages by Message-ID, as the device
// sees them (ListMessages), with their upstream UIDs where they have one.
func (c *churn) storeMessages() map[string][]churnMessage {
	out := map[string][]churnMessage{}
	for _, name := range sortedKeys(c.mailboxIDs) {
		uids := c.upstreamUIDs(c.mailboxIDs[name])
		token := ""
		for {
			resp, err := c.dev.ListMessages(c.ctx, &mailbusv1.ListMessagesRequest{MailboxId: c.mailboxIDs[name], PageSize: 1000, PageToken: token})
			if err != nil {
				c.t.Fatalf("list messages of %s: %v", name, err)
			}
			for _, m := range resp.Messages {
				fl := slices.Clone(m.Flags)
				sort.Strings(fl)
				id := strings.Trim(m.GetEnvelope().GetMessageId(), "<>")
				out[id] = append(out[id], churnMessage{id: m.Id, folder: name, uid: uids[m.Id], flags: fl})
			}
			if token = resp.NextPageToken; token == "" {
				break
			}
		}
	}
	return out
}

// upstreamUIDs returns the UID of every message of a mailbox that has an
// upstream identity in the store, by message id.
func (c *churn) upstreamUIDs(mailboxID string) map[string]uint32 {
	stream, err := c.e.ingest.ListUpstreamIds(c.ctx, &mailbusv1.ListUpstreamIdsRequest{AccountId: c.acct, MailboxId: mailboxID})
	if err != nil {
		c.t.Fatal(err)
	}
	out := map[string]uint32{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			c.t.Fatalf("upstream ids: %v", err)
		}
		for _, m := range resp.Messages {
			out[m.MessageId] = m.Upstream.Uid
		}
	}
}

// serverMessages lists the server's messages by Message-ID (every
// folder's).
func (c *churn) serverMessages() map[string][]churnMessage {
	out := map[string][]churnMessage{}
	for _, name := range c.serverFolders() {
		sel, err := c.tp.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			c.t.Fatalf("select %s: %v", name, err)
		}
		if sel.NumMessages == 0 {
			continue
		}
		hdr := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}
		msgs, err := c.tp.Fetch(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{hdr}}).Collect()
		if err != nil {
			c.t.Fatalf("fetch %s: %v", name, err)
		}
		for _, m := range msgs {
			var fl []string
			for _, f := range m.Flags {
				if f != `\Recent` {
					fl = append(fl, string(f))
				}
			}
			sort.Strings(fl)
			id := ""
			if h, err := mail.ReadMessage(io.MultiReader(bytes.NewReader(m.FindBodySection(hdr)), strings.NewReader("\r\n"))); err == nil {
				id = strings.Trim(h.Header.Get("Message-Id"), "<>")
			}
			out[id] = append(out[id], churnMessage{folder: name, uid: uint32(m.UID), flags: fl})
		}
	}
	return out
}

func (c *churn) serverFolders() []string {
	list, err := c.tp.List("", "*", nil).Collect()
	if err != nil {
		c.t.Fatalf("list: %v", err)
	}
	var out []string
	for _, m := range list {
		out = append(out, m.Mailbox)
	}
	sort.Strings(out)
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// converge triggers full passes (SyncNow) until the store and the server
// agree, twice in a row with nothing pending, and returns nil; or returns
// the divergences once they are final (a fixpoint: churnFixpointPasses
// passes changed nothing) or churnQuiesceBound has passed.
func (c *churn) converge() []string {
	deadline := time.Now().Add(churnQuiesceBound)
	var last []string
	agreed, same := 0, 0
	lastState := uint64(0)
	for time.Now().Before(deadline) {
		if err := c.sync.svc.SyncNow(c.ctx, c.acct); err != nil {
			if !errors.Is(err, imapsync.ErrNotWorked) {
				c.t.Logf("SyncNow: %v", err)
			}
			// Between sessions (a reconnect), or a pass that failed: the
			// next session starts with a full pass anyway.
			agreed, same = 0, 0
			time.Sleep(100 * time.Millisecond)
			continue
		}
		pending, err := c.e.ingest.ListPendingWriteBacks(c.ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: c.acct})
		if err != nil {
			c.t.Fatal(err)
		}
		st, err := c.e.sync.GetState(c.ctx, &mailbusv1.GetStateRequest{AccountId: c.acct})
		if err != nil {
			c.t.Fatal(err)
		}
		div := c.compare()
		if len(pending.Writebacks) > 0 {
			div = append(div, fmt.Sprintf("%d write-backs pending", len(pending.Writebacks)))
		}
		if len(div) == 0 {
			if agreed++; agreed == 2 {
				return nil
			}
			continue
		}
		agreed = 0
		if st.State == lastState && slices.Equal(div, last) && len(pending.Writebacks) == 0 {
			if same++; same >= churnFixpointPasses {
				return div
			}
		} else {
			same = 0
		}
		last, lastState = div, st.State
	}
	return append(last, fmt.Sprintf("(still diverged after %v of passes)", churnQuiesceBound))
}

// compare lists every divergence between the store and the server: a
// message whose folder or flags differ, one on one side only, one doubled
// on either side, one of the pool that no actor deleted but is gone.
//
// One doubling is the server's own: Dovecot (Maildir) keeps two copies of
// a message that two sessions MOVE at once (16 of 40 tries of two
// concurrent UID MOVEs of one message did), as when the third party moves
// a message while imapsync writes back the device's move of it; without
// MOVE, two sessions' COPY and EXPUNGE do the same. Copies on the server
// that the store mirrors one for one, of a message both actors moved, are
// noted in serverDoubled and not counted as a divergence.
func (c *churn) compare() []string {
	srv, st := c.serverMessages(), c.storeMessages()
	var div []string
	ids := map[string]bool{}
	for id := range srv {
		ids[id] = true
	}
	for id := range st {
		ids[id] = true
	}
	for _, id := range c.pool {
		ids[id] = true
	}
	for _, id := range sortedKeys(ids) {
		s, d := srv[id], st[id]
		switch {
		case len(s) > 1 && c.moved[id] == movedByBoth && mirrored(s, d):
			c.serverDoubled[id] = true
		case len(s) > 1 || len(d) > 1:
			div = append(div, fmt.Sprintf("<%s> doubled: on the server %v; in the store %v", id, s, d))
		case len(s) == 0 && len(d) == 0:
			if !c.mayBeGone[id] {
				div = append(div, fmt.Sprintf("<%s> lost: on neither side, and no actor deleted it", id))
			}
		case len(s) == 0 || len(d) == 0:
			div = append(div, fmt.Sprintf("<%s> on one side only: on the server %v; in the store %v", id, s, d))
		case s[0].folder != d[0].folder || s[0].uid != d[0].uid || !slices.Equal(s[0].flags, d[0].flags):
			div = append(div, fmt.Sprintf("<%s> differs: %v; %v", id, s[0], d[0]))
		}
	}
	return div
}

// mirrored reports whether the store's copies of a message are the
// server's, one for one: same folder, UID and flags.
func mirrored(server, stored []churnMessage) bool {
	if len(server) != len(stored) {
		return false
	}
	key := func(m churnMessage) string { return fmt.Sprint(m.folder, m.uid, m.flags) }
	a, b := make([]string, len(server)), make([]string, len(stored))
	for i := range server {
		a[i], b[i] = key(server[i]), key(stored[i])
	}
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}

// logHistories logs the steps that acted on each diverged message.
func (c *churn) logHistories(div []string) {
	for _, line := range div {
		if !strings.HasPrefix(line, "<") {
			continue
		}
		id := line[1:strings.Index(line, ">")]
		c.t.Logf("history of <%s>:\n  %s", id, strings.Join(c.history[id], "\n  "))
	}
}

// dataEvents returns the events that change data (each raises the state
// by one), and the highest state among them.
func (c *consumer) dataEvents() ([]*mailbusv1.Event, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*mailbusv1.Event
	var top uint64
	for _, ev := range c.evs {
		switch ev.Payload.(type) {
		case *mailbusv1.Event_AccountStatus, *mailbusv1.Event_WritebackFailed:
			continue
		}
		out = append(out, ev)
		top = max(top, ev.State)
	}
	return out, top
}

// checkEvents checks the account's events against the store: one event
// per state from 1 to the current state, and the last event about each
// message and mailbox says what the store holds now (deleted ones
// included).
func (c *churn) checkEvents() []string {
	st, err := c.e.sync.GetState(c.ctx, &mailbusv1.GetStateRequest{AccountId: c.acct})
	if err != nil {
		c.t.Fatal(err)
	}
	waitFor(c.t, "the events up to the store's state", func() bool {
		_, top := c.events.dataEvents()
		return top >= st.State
	})
	evs, _ := c.events.dataEvents()
	var div []string
	byState := map[uint64]*mailbusv1.Event{}
	for _, ev := range evs {
		if prev := byState[ev.State]; prev != nil {
			div = append(div, fmt.Sprintf("two events with state %d: %v and %v", ev.State, prev, ev))
		}
		byState[ev.State] = ev
	}
	for s := uint64(1); s <= st.State; s++ {
		if byState[s] == nil {
			div = append(div, fmt.Sprintf("no event with state %d", s))
		}
	}
	lastMsg := map[string]*mailbusv1.Event{}
	lastBox := map[string]*mailbusv1.Event{}
	for s := uint64(1); s <= st.State; s++ {
		ev := byState[s]
		switch p := ev.GetPayload().(type) {
		case *mailbusv1.Event_MessageCreated:
			lastMsg[p.MessageCreated.GetMessage().GetId()] = ev
		case *mailbusv1.Event_MessageUpdated:
			lastMsg[p.MessageUpdated.GetMessage().GetId()] = ev
		case *mailbusv1.Event_MessageDeleted:
			lastMsg[p.MessageDeleted.GetMessageId()] = ev
		case *mailbusv1.Event_MailboxCreated:
			lastBox[p.MailboxCreated.GetMailbox().GetId()] = ev
		case *mailbusv1.Event_MailboxUpdated:
			lastBox[p.MailboxUpdated.GetMailbox().GetId()] = ev
		case *mailbusv1.Event_MailboxDeleted:
			lastBox[p.MailboxDeleted.GetMailboxId()] = ev
		}
	}
	folderOf := map[string]string{}
	for name, id := range c.mailboxIDs {
		folderOf[id] = name
	}
	stored := map[string]bool{}
	for _, ms := range c.storeMessages() {
		for _, m := range ms {
			stored[m.id] = true
			ev := lastMsg[m.id]
			var sum *mailbusv1.MessageSummary
			if ev.GetMessageCreated() != nil {
				sum = ev.GetMessageCreated().GetMessage()
			} else if ev.GetMessageUpdated() != nil {
				sum = ev.GetMessageUpdated().GetMessage()
			}
			fl := slices.Clone(sum.GetFlags())
			sort.Strings(fl)
			if sum == nil || folderOf[sum.MailboxId] != m.folder || !slices.Equal(fl, m.flags) {
				div = append(div, fmt.Sprintf("message %s: the store has it in %s with %v; its last event (state %d) says %v", m.id, m.folder, m.flags, ev.GetState(), ev.GetPayload()))
			}
		}
	}
	for id, ev := range lastMsg {
		if !stored[id] && ev.GetMessageDeleted() == nil {
			div = append(div, fmt.Sprintf("message %s: not in the store; its last event (state %d) says %v", id, ev.State, ev.GetPayload()))
		}
	}
	resp, err := c.e.mailboxes.ListMailboxes(c.ctx, &mailbusv1.ListMailboxesRequest{AccountId: c.acct})
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mb := range resp.Mailboxes {
		ev := lastBox[mb.Id]
		name := ev.GetMailboxCreated().GetMailbox().GetName()
		if ev.GetMailboxUpdated() != nil {
			name = ev.GetMailboxUpdated().GetMailbox().GetName()
		}
		if name != mb.Name {
			div = append(div, fmt.Sprintf("mailbox %s (%s): its last event says %v", mb.Id, mb.Name, ev.GetPayload()))
		}
	}
	return div
}

// checkChangeLog checks the store's change log against its content:
// GetChanges from state 0 (the account's start; the log is not pruned
// within a test) lists every message and mailbox the store holds as
// created, and nothing else (one created and deleted within the range
// appears nowhere; created wins over updated).
func (c *churn) checkChangeLog() []string {
	created, other := map[string]bool{}, map[string]bool{}
	since := uint64(0)
	for {
		resp, err := c.e.sync.GetChanges(c.ctx, &mailbusv1.GetChangesRequest{AccountId: c.acct, SinceState: since, MaxChanges: 10000})
		if err != nil {
			c.t.Fatalf("GetChanges from %d: %v", since, err)
		}
		note := func(set map[string]bool, kind string, ids []string) {
			for _, id := range ids {
				set[kind+" "+id] = true
			}
		}
		note(created, "message", resp.CreatedMessageIds)
		note(created, "mailbox", resp.CreatedMailboxIds)
		note(other, "message", append(resp.UpdatedMessageIds, resp.DeletedMessageIds...))
		note(other, "mailbox", append(resp.UpdatedMailboxIds, resp.DeletedMailboxIds...))
		since = resp.NewState
		if !resp.HasMore {
			break
		}
	}
	held := map[string]bool{}
	for _, ms := range c.storeMessages() {
		for _, m := range ms {
			held["message "+m.id] = true
		}
	}
	resp, err := c.e.mailboxes.ListMailboxes(c.ctx, &mailbusv1.ListMailboxesRequest{AccountId: c.acct})
	if err != nil {
		c.t.Fatal(err)
	}
	for _, mb := range resp.Mailboxes {
		held["mailbox "+mb.Id] = true
	}
	var div []string
	for _, k := range sortedKeys(held) {
		if !created[k] {
			div = append(div, fmt.Sprintf("change log: %s is in the store but not among the created since state 0", k))
		}
	}
	for _, k := range sortedKeys(created) {
		if !held[k] {
			div = append(div, fmt.Sprintf("change log: %s created since state 0 is not in the store", k))
		}
	}
	for _, k := range sortedKeys(other) {
		div = append(div, fmt.Sprintf("change log: %s updated or deleted since state 0, though it was created in that range", k))
	}
	return div
}
