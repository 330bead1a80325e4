package store_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestIMAPUIDsThroughTheAPI: the IMAP UIDs and UIDVALIDITYs the store
// keeps for its IMAP gateway (decision 0040) reach every answer and event
// of the API, ListMessages pages in UID order, and a POP3 account takes
// appends and moves without a write-back.
func TestIMAPUIDsThroughTheAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		ctx := callCtx(t)
		acct := e.createAccount(t, pop3Account("home"))
		inbox := e.inbox(t, acct.Id)
		if inbox.ImapUidvalidity == 0 || inbox.ImapUidnext != 1 {
			t.Fatalf("new inbox: UIDVALIDITY %d UIDNEXT %d, want nonzero and 1", inbox.ImapUidvalidity, inbox.ImapUidnext)
		}
		e.mustIngest(t, pop3Item(acct.Id, "u1", testMessage(1)), pop3Item(acct.Id, "u2", testMessage(2)), pop3Item(acct.Id, "u3", testMessage(3)))
		const dev = "imap:test"
		created, err := e.mailboxes.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: acct.Id, Name: "Sent", DeviceId: dev})
		if err != nil {
			t.Fatal(err)
		}
		sent := created.Mailbox
		if sent.ImapUidvalidity == 0 || sent.ImapUidvalidity == inbox.ImapUidvalidity || sent.ImapUidnext != 1 {
			t.Errorf("CreateMailbox: UIDVALIDITY %d (inbox %d) UIDNEXT %d", sent.ImapUidvalidity, inbox.ImapUidvalidity, sent.ImapUidnext)
		}
		appended, err := e.mailboxes.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: sent.Id, Raw: testMessage(4), Flags: []string{`\Seen`}, DeviceId: dev})
		if err != nil {
			t.Fatalf("AppendMessage to a POP3 account: %v", err)
		}
		toInbox, err := e.mailboxes.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: inbox.Id, Raw: testMessage(5), DeviceId: dev})
		if err != nil {
			t.Fatal(err)
		}
		byUID := e.listByUID(t, inbox.Id, 0, 100)
		moved, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: acct.Id, MessageIds: []string{byUID[1].Id}, ToMailboxId: sent.Id, DeviceId: dev})
		if err != nil {
			t.Fatal(err)
		}
		flagged, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: []string{byUID[0].Id}, Add: []string{`\Flagged`}, DeviceId: dev})
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.mailboxes.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: byUID[2].Id})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what string
			got  uint32
			want uint32
		}{
			{"appended to Sent", appended.Message.ImapUid, 1},
			{"appended to the inbox", toInbox.Message.ImapUid, 4},
			{"moved to Sent", moved.Messages[0].ImapUid, 2},
			{"flagged", flagged.Messages[0].ImapUid, 1},
			{"GetMessage", got.Message.Summary.ImapUid, 3},
		} {
			if c.got != c.want {
				t.Errorf("%s: UID %d, want %d", c.what, c.got, c.want)
			}
		}
		mbs, err := e.mailboxes.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: acct.Id})
		if err != nil {
			t.Fatal(err)
		}
		for _, mb := range mbs.Mailboxes {
			want := map[string]uint32{"INBOX": 5, "Sent": 3}[mb.Name]
			if mb.ImapUidnext != want {
				t.Errorf("ListMailboxes: %s UIDNEXT %d, want %d", mb.Name, mb.ImapUidnext, want)
			}
		}
		var pages [][]uint32
		tok := ""
		for {
			resp, err := e.mailboxes.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: inbox.Id, Order: mailbusv1.MessageOrder_MESSAGE_ORDER_IMAP_UID, MinImapUid: 2, PageSize: 1, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			var page []uint32
			for _, m := range resp.Messages {
				page = append(page, m.ImapUid)
			}
			pages = append(pages, page)
			if tok = resp.NextPageToken; tok == "" {
				break
			}
		}
		if fmt.Sprint(pages) != "[[3] [4]]" {
			t.Errorf("ListMessages in UID order from 2, one a page: %v, want [[3] [4]]", pages)
		}
		wbs, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: acct.Id})
		if err != nil || len(wbs.GetWritebacks()) != 0 {
			t.Errorf("POP3 write-backs: %v %v, want none", wbs.GetWritebacks(), err)
		}
		var events []string
		for _, ev := range replay(t, e, acct.Id, 0) {
			if m := ev.GetMessageCreated().GetMessage(); m != nil {
				events = append(events, fmt.Sprintf("created %s UID %d by %s", m.MailboxId, m.ImapUid, ev.Origin.GetDeviceId()))
			}
			if m := ev.GetMessageUpdated().GetMessage(); m != nil {
				events = append(events, fmt.Sprintf("updated %s UID %d by %s", m.MailboxId, m.ImapUid, ev.Origin.GetDeviceId()))
			}
		}
		want := []string{
			"created " + inbox.Id + " UID 1 by ",
			"created " + inbox.Id + " UID 2 by ",
			"created " + inbox.Id + " UID 3 by ",
			"created " + sent.Id + " UID 1 by " + dev,
			"created " + inbox.Id + " UID 4 by " + dev,
			"updated " + sent.Id + " UID 2 by " + dev,
			"updated " + inbox.Id + " UID 1 by " + dev,
		}
		if !slices.Equal(events, want) {
			t.Errorf("WatchChanges:\n%q\nwant\n%q", events, want)
		}
	})
}

// TestIMAPUIDsAcrossStoreReplicas: devices appending into one mailbox
// through two store replicas on one PostgreSQL at once never get the same
// UID, and both replicas then show the same UIDNEXT above them all.
func TestIMAPUIDsAcrossStoreReplicas(t *testing.T) {
	pg := dbtest.Backends()[1]
	cfg := pg.Config(t)
	stores := []*env{startStore(t, pg, storeOpts{noNATS: true, dbConfig: &cfg}), startStore(t, pg, storeOpts{noNATS: true, dbConfig: &cfg})}
	acct := stores[0].createAccount(t, pop3Account("shared"))
	inbox := stores[0].inbox(t, acct.Id)
	const perReplica = 40
	var mu sync.Mutex
	var uids []uint32
	var wg sync.WaitGroup
	errs := make(chan error, len(stores))
	for r, e := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perReplica {
				resp, err := e.mailboxes.AppendMessage(callCtx(t), &mailbusv1.AppendMessageRequest{MailboxId: inbox.Id, Raw: testMessage(1000*r + i), DeviceId: fmt.Sprint("replica-", r)})
				if err != nil {
					errs <- fmt.Errorf("replica %d: %w", r, err)
					return
				}
				mu.Lock()
				uids = append(uids, resp.Message.ImapUid)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	slices.Sort(uids)
	if want := len(stores) * perReplica; len(slices.Compact(slices.Clone(uids))) != want {
		t.Fatalf("%d distinct UIDs of %d appends: %v", len(slices.Compact(slices.Clone(uids))), want, uids)
	}
	for r, e := range stores {
		if next := e.inbox(t, acct.Id).ImapUidnext; next != uids[len(uids)-1]+1 {
			t.Errorf("replica %d: UIDNEXT %d, want %d", r, next, uids[len(uids)-1]+1)
		}
	}
}

// listByUID lists a mailbox in UID order from min through the API.
func (e *env) listByUID(t testing.TB, mailboxID string, min uint32, pageSize uint32) []*mailbusv1.MessageSummary {
	t.Helper()
	var out []*mailbusv1.MessageSummary
	tok := ""
	for {
		resp, err := e.mailboxes.ListMessages(callCtx(t), &mailbusv1.ListMessagesRequest{MailboxId: mailboxID, Order: mailbusv1.MessageOrder_MESSAGE_ORDER_IMAP_UID, MinImapUid: min, PageSize: pageSize, PageToken: tok})
		if err != nil {
			t.Fatalf("ListMessages in UID order: %v", err)
		}
		out = append(out, resp.Messages...)
		if resp.NextPageToken == "" {
			return out
		}
		tok = resp.NextPageToken
	}
}
