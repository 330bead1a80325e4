package imapgw

import (
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestDeletedByAnotherDevice: a message another device deleted while the
// client still has it in its view (its EXPUNGE not told yet) does not
// fail STORE, MOVE, EXPUNGE, FETCH BODY[] (which sets \Seen), SEARCH or
// COPY of the others: they are done, the deleted one left out.
func TestDeletedByAnotherDevice(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	var msgs []*mailbusv1.MessageSummary
	for i := range 12 {
		msgs = append(msgs, e.appendMsg(inbox.Id, testMail("message "+string(rune('a'+i)))))
	}
	gw := e.gateway(nil)
	c := gw.login(t, "work", tok, nil)
	if err := c.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	archive := e.mailbox(acct.Id, "Archive")
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	uids := func(ms ...*mailbusv1.MessageSummary) imap.UIDSet {
		var set imap.UIDSet
		for _, m := range ms {
			set.AddNum(imap.UID(m.ImapUid))
		}
		return set
	}
	deleteElsewhere := func(m *mailbusv1.MessageSummary) {
		t.Helper()
		if _, err := e.mailboxes().DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{m.Id}, DeviceId: "phone"}); err != nil {
			t.Fatal(err)
		}
	}
	flags := func(m *mailbusv1.MessageSummary) []string {
		t.Helper()
		got, err := e.mailboxes().GetMessage(callCtx(t), &mailbusv1.GetMessageRequest{MessageId: m.Id})
		if err != nil {
			t.Fatal(err)
		}
		return got.Message.Summary.Flags
	}
	noop := func() {
		t.Helper()
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
	}

	// STORE of 0-2 with 1 deleted elsewhere.
	deleteElsewhere(msgs[1])
	if _, err := c.Store(uids(msgs[0], msgs[1], msgs[2]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Errorf("STORE with a message deleted elsewhere: %v", err)
	}
	for _, m := range []*mailbusv1.MessageSummary{msgs[0], msgs[2]} {
		if !slices.Contains(flags(m), `\Flagged`) {
			t.Errorf("STORE did not flag %s: %v", m.Id, flags(m))
		}
	}
	noop()

	// MOVE of 3-4 with 3 deleted elsewhere.
	deleteElsewhere(msgs[3])
	if _, err := c.Move(uids(msgs[3], msgs[4]), "Archive").Wait(); err != nil {
		t.Errorf("MOVE with a message deleted elsewhere: %v", err)
	}
	if n := e.count(archive.Id); n != 1 {
		t.Errorf("Archive has %d messages after MOVE, want 1", n)
	}
	noop()

	// EXPUNGE of 5-6 (\Deleted) with 5 deleted elsewhere.
	if _, err := c.Store(uids(msgs[5], msgs[6]), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	deleteElsewhere(msgs[5])
	if _, err := c.Expunge().Collect(); err != nil {
		t.Errorf("EXPUNGE with a message deleted elsewhere: %v", err)
	}
	if _, err := e.mailboxes().GetMessage(callCtx(t), &mailbusv1.GetMessageRequest{MessageId: msgs[6].Id}); err == nil {
		t.Errorf("EXPUNGE left message 6")
	}
	noop()

	// FETCH BODY[] (sets \Seen) of 7-8 with 7 deleted elsewhere.
	deleteElsewhere(msgs[7])
	if _, err := c.Fetch(uids(msgs[7], msgs[8]), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Errorf("FETCH BODY[] with a message deleted elsewhere: %v", err)
	}
	if !slices.Contains(flags(msgs[8]), `\Seen`) {
		t.Errorf("FETCH BODY[] did not set \\Seen on message 8: %v", flags(msgs[8]))
	}
	noop()

	// SEARCH TEXT with 9 deleted elsewhere: 10 found.
	deleteElsewhere(msgs[9])
	data, err := c.UIDSearch(&imap.SearchCriteria{Text: []string{"message k"}}, nil).Wait()
	if err != nil {
		t.Errorf("SEARCH TEXT with a message deleted elsewhere: %v", err)
	} else if got := data.AllUIDs(); len(got) != 1 || got[0] != imap.UID(msgs[10].ImapUid) {
		t.Errorf("SEARCH TEXT: %v, want [%d]", got, msgs[10].ImapUid)
	}
	noop()

	// COPY of 10-11 with 10 deleted elsewhere: 11 copied.
	deleteElsewhere(msgs[10])
	cp, err := c.Copy(uids(msgs[10], msgs[11]), "Archive").Wait()
	if err != nil {
		t.Errorf("COPY with a message deleted elsewhere: %v", err)
	} else if got := cp.SourceUIDs.String(); got != uids(msgs[11]).String() {
		t.Errorf("COPYUID source %s, want %s", got, uids(msgs[11]))
	}
	if n := e.count(archive.Id); n != 2 {
		t.Errorf("Archive has %d messages after COPY, want 2", n)
	}
}
