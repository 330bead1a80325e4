package imapgw

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}

func imapType(err error) imap.StatusResponseType {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Type
	}
	return ""
}

// TestLogin: the user name is the account's name or upstream user name,
// the password a token reaching that account; anything else is a clean
// NO and the connection stays usable.
func TestLogin(t *testing.T) {
	e := startEnv(t)
	work, _ := e.account("work", "ann@example.com")
	home, _ := e.account("home", "ann@home.example")
	workToken, _ := e.token(false, work.Id)
	homeToken, _ := e.token(false, home.Id)
	gw := e.gateway(nil)
	for _, tc := range []struct {
		name, user, pass string
		ok               bool
	}{
		{"account name", "work", workToken, true},
		{"account name, other case", "WORK", workToken, true},
		{"upstream user name", "ann@example.com", workToken, true},
		{"another account's token", "work", homeToken, false},
		{"unknown account", "nobody", workToken, false},
		{"not a token", "work", "hunter2", false},
		{"unknown token", "work", "mbt_0123456789abcdef_bm90IGEgcmVhbCB0b2tlbg", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := gw.client(t, nil)
			err := c.Login(tc.user, tc.pass).Wait()
			if tc.ok != (err == nil) {
				t.Fatalf("login: %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok {
				if imapType(err) != imap.StatusResponseTypeNo || imapCode(err) != imap.ResponseCodeAuthenticationFailed {
					t.Errorf("login: %v, want NO [AUTHENTICATIONFAILED]", err)
				}
				// The session survives a failed login.
				if err := c.Noop().Wait(); err != nil {
					t.Errorf("NOOP after the failed login: %v", err)
				}
				return
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				t.Errorf("SELECT INBOX: %v", err)
			}
		})
	}
}

// TestReadOnlyToken: a read-only token reads but changes nothing.
func TestReadOnlyToken(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	msg := e.appendMsg(inbox.Id, testMail("one"))
	ro, _ := e.token(true, acct.Id)
	gw := e.gateway(nil)
	c := gw.login(t, "work", ro, nil)
	data, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if data.NumMessages != 1 || len(data.PermanentFlags) != 0 {
		t.Errorf("SELECT: %d messages, PERMANENTFLAGS %v; want 1, none", data.NumMessages, data.PermanentFlags)
	}
	store := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil)
	if _, err := store.Collect(); imapCode(err) != imap.ResponseCodeNoPerm {
		t.Errorf("STORE: %v, want NO [NOPERM]", err)
	}
	if err := c.Create("Archive", nil).Wait(); imapCode(err) != imap.ResponseCodeNoPerm {
		t.Errorf("CREATE: %v, want NO [NOPERM]", err)
	}
	// BODY[] does not set \Seen through a read-only token.
	if _, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}}).Collect(); err != nil {
		t.Fatal(err)
	}
	got, err := e.mailboxes().GetMessage(callCtx(t), &mailbusv1.GetMessageRequest{MessageId: msg.Id})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Message.Summary.Flags) != 0 {
		t.Errorf("flags after a read-only FETCH BODY[]: %v", got.Message.Summary.Flags)
	}
}

// TestReadOnlySelection: CLOSE on a read-only selection (EXAMINE, or a
// read-only token's SELECT) succeeds and removes nothing; EXAMINE with a
// read-write token refuses STORE, EXPUNGE and MOVE but not APPEND, COPY,
// CREATE, RENAME and DELETE; a read-only token is refused all of those.
func TestReadOnlySelection(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	e.appendMsg(inbox.Id, testMail("one"), `\Deleted`)
	rw, _ := e.token(false, acct.Id)
	ro, _ := e.token(true, acct.Id)
	gw := e.gateway(nil)
	one := imap.SeqSetNum(1)

	c := gw.login(t, "work", rw, nil)
	for _, step := range []struct {
		name string
		run  func() error
		code imap.ResponseCode // "" for OK
	}{
		{"EXAMINE", func() error { _, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); return err }, ""},
		{"STORE", func() error {
			_, err := c.Store(one, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
			return err
		}, imap.ResponseCodeNoPerm},
		{"EXPUNGE", func() error { _, err := c.Expunge().Collect(); return err }, imap.ResponseCodeNoPerm},
		{"CREATE", func() error { return c.Create("Archive", nil).Wait() }, ""},
		{"MOVE", func() error { _, err := c.Move(one, "Archive").Wait(); return err }, imap.ResponseCodeNoPerm},
		{"CREATE", func() error { return c.Create("Spare", nil).Wait() }, ""},
		{"RENAME", func() error { return c.Rename("Spare", "Old", nil).Wait() }, ""},
		{"APPEND", func() error { return appendTo(c, "Old", testMail("two")) }, ""},
		{"COPY", func() error { _, err := c.Copy(one, "Old").Wait(); return err }, ""},
		{"DELETE", func() error { return c.Delete("Old").Wait() }, ""},
		{"CLOSE", func() error { return c.UnselectAndExpunge().Wait() }, ""},
		// Selected again read-write: CLOSE expunges.
		{"SELECT", func() error { _, err := c.Select("INBOX", nil).Wait(); return err }, ""},
	} {
		if err := step.run(); imapCode(err) != step.code || (step.code == "" && err != nil) {
			t.Errorf("%s after EXAMINE with a read-write token: %v, want %q", step.name, err, step.code)
		}
	}
	if n := e.count(inbox.Id); n != 1 {
		t.Errorf("the inbox has %d messages after CLOSE of EXAMINE, want 1", n)
	}

	r := gw.login(t, "work", ro, nil)
	if _, err := r.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct {
		name string
		run  func() error
	}{
		{"CREATE", func() error { return r.Create("New", nil).Wait() }},
		{"RENAME", func() error { return r.Rename("Archive", "Old", nil).Wait() }},
		{"DELETE", func() error { return r.Delete("Archive").Wait() }},
		{"APPEND", func() error { return appendTo(r, "INBOX", testMail("three")) }},
		{"COPY", func() error { _, err := r.Copy(one, "Archive").Wait(); return err }},
		{"MOVE", func() error { _, err := r.Move(one, "Archive").Wait(); return err }},
		{"EXPUNGE", func() error { _, err := r.Expunge().Collect(); return err }},
	} {
		if err := step.run(); imapCode(err) != imap.ResponseCodeNoPerm {
			t.Errorf("%s with a read-only token: %v, want NO [NOPERM]", step.name, err)
		}
	}
	if err := r.UnselectAndExpunge().Wait(); err != nil {
		t.Errorf("CLOSE with a read-only token: %v", err)
	}
	if n := e.count(inbox.Id); n != 1 {
		t.Errorf("the inbox has %d messages after a read-only token's CLOSE, want 1", n)
	}
	// CLOSE left the selected state: NOOP works, FETCH does not.
	if _, err := r.Fetch(one, &imap.FetchOptions{UID: true}).Collect(); err == nil {
		t.Error("FETCH after CLOSE worked: the mailbox is still selected")
	}
}

// appendTo appends raw to a mailbox.
func appendTo(c *imapclient.Client, mailbox, raw string) error {
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write([]byte(raw)); err != nil {
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err := cmd.Wait()
	return err
}

// TestListSelectFetch: LIST with special use, SELECT from the store's
// UIDVALIDITY/UIDNEXT, FETCH byte-exact against GetRawMessage.
func TestListSelectFetch(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	var sums []*mailbusv1.MessageSummary
	for i := range 3 {
		sums = append(sums, e.appendMsg(inbox.Id, testMail(fmt.Sprintf("message %d", i)), `\Seen`))
	}
	if _, err := e.mailboxes().CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: acct.Id, Name: "Archive/2026", DeviceId: "test"}); err != nil {
		t.Fatal(err)
	}
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	c := gw.login(t, "work", tok, nil)

	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, UIDValidity: true}}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range list {
		names = append(names, fmt.Sprintf("%s%v", l.Mailbox, l.Attrs))
		if l.Mailbox == "INBOX" && (l.Status == nil || *l.Status.NumMessages != 3) {
			t.Errorf("LIST-STATUS of INBOX: %+v", l.Status)
		}
	}
	slices.Sort(names)
	// "Archive" is no mailbox of the store: a \Noselect level.
	if got := strings.Join(names, ","); got != `Archive/2026[\HasNoChildren],Archive[\Noselect \HasChildren],INBOX[\HasNoChildren]` {
		t.Errorf("LIST: %v", got)
	}

	inbox = e.mailbox(acct.Id, "INBOX")
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 3 || sel.UIDValidity != inbox.ImapUidvalidity || uint32(sel.UIDNext) != inbox.ImapUidnext || sel.UIDValidity == 0 {
		t.Errorf("SELECT: %d messages, UIDVALIDITY %d UIDNEXT %d; the store: %d, %d", sel.NumMessages, sel.UIDValidity, sel.UIDNext, inbox.ImapUidvalidity, inbox.ImapUidnext)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true, Envelope: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{{Peek: true}, {Specifier: imap.PartSpecifierHeader, Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 3 {
		t.Fatalf("FETCH returned %d messages", len(msgs))
	}
	for i, m := range msgs {
		want := sums[i]
		raw := e.rawMsg(want.Id)
		body := m.FindBodySection(&imap.FetchItemBodySection{})
		if !bytes.Equal(body, raw) {
			t.Errorf("message %d: BODY[] differs from GetRawMessage", i)
		}
		if hdr := m.FindBodySection(&imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader}); !bytes.HasPrefix(raw, hdr) || !bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
			t.Errorf("message %d: BODY[HEADER] %q", i, hdr)
		}
		if uint32(m.UID) != want.ImapUid || m.UID == 0 {
			t.Errorf("message %d: UID %d, the store's %d", i, m.UID, want.ImapUid)
		}
		if m.RFC822Size != int64(len(raw)) || !slices.Equal(m.Flags, []imap.Flag{imap.FlagSeen}) {
			t.Errorf("message %d: size %d flags %v", i, m.RFC822Size, m.Flags)
		}
		if m.Envelope == nil || m.Envelope.Subject != fmt.Sprintf("message %d", i) {
			t.Errorf("message %d: envelope %+v", i, m.Envelope)
		}
		if mp, ok := m.BodyStructure.(*imap.BodyStructureMultiPart); !ok || mp.Subtype != "mixed" || len(mp.Children) != 2 {
			t.Errorf("message %d: body structure %#v", i, m.BodyStructure)
		}
		if !m.InternalDate.Equal(want.InternalDate.AsTime().Truncate(time.Second)) {
			t.Errorf("message %d: INTERNALDATE %v, the store's %v", i, m.InternalDate, want.InternalDate.AsTime())
		}
	}
	// SEARCH by flag and by text.
	if data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "message 1"}}}, nil).Wait(); err != nil ||
		!slices.Equal(data.AllUIDs(), []imap.UID{imap.UID(sums[1].ImapUid)}) {
		t.Errorf("UID SEARCH HEADER Subject: %v %v", data, err)
	}
	if data, err := c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, nil).Wait(); err != nil || len(data.AllSeqNums()) != 0 {
		t.Errorf("SEARCH UNSEEN: %v %v", data, err)
	}
	// ESEARCH: SEARCH RETURN (MIN MAX COUNT).
	if data, err := c.UIDSearch(&imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait(); err != nil ||
		data.Count != 3 || data.Min != sums[0].ImapUid || data.Max != sums[2].ImapUid {
		t.Errorf("UID SEARCH RETURN (MIN MAX COUNT) SEEN: %+v %v", data, err)
	}
}

// watchOrigin waits for the next message.updated event of the account and
// returns its origin device.
func watchUpdates(t *testing.T, e *env, accountID string) <-chan *mailbusv1.Event {
	state, err := mailbusv1.NewSyncServiceClient(e.admin).GetState(callCtx(t), &mailbusv1.GetStateRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := mailbusv1.NewSyncServiceClient(e.admin).WatchChanges(callCtx(t), &mailbusv1.WatchChangesRequest{AccountId: accountID, SinceState: state.State, SkipStatus: true})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *mailbusv1.Event, 100)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				close(ch)
				return
			}
			if r.Event != nil {
				ch <- r.Event
			}
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan *mailbusv1.Event) *mailbusv1.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(waitFor):
		t.Fatal("no event")
		return nil
	}
}

// TestChangesFanOut: STORE, EXPUNGE, MOVE, APPEND, COPY and CREATE through
// the gateway are the store's changes with origin imap:<token id>, and the
// UIDs the client is told are the store's.
func TestChangesFanOut(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	cMsg := e.appendMsg(inbox.Id, testMail("c"))
	tok, tokID := e.token(false, acct.Id)
	device := "imap:" + tokID
	gw := e.gateway(nil)
	cl := gw.login(t, "work", tok, nil)
	if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	events := watchUpdates(t, e, acct.Id)

	// STORE.
	got, err := cl.Store(imap.UIDSetNum(imap.UID(a.ImapUid)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect()
	if err != nil || len(got) != 1 || !slices.Contains(got[0].Flags, imap.FlagFlagged) {
		t.Fatalf("STORE: %v %v", got, err)
	}
	ev := next(t, events)
	if ev.GetMessageUpdated().GetMessage().GetId() != a.Id || ev.Origin.GetDeviceId() != device || !slices.Contains(ev.GetMessageUpdated().FlagsAdded, `\Flagged`) {
		t.Errorf("event of STORE: %v", ev)
	}

	// CREATE, then MOVE: new UIDs in the destination, COPYUID says them.
	if err := cl.Create("Archive", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events); ev.GetMailboxCreated().GetMailbox().GetName() != "Archive" || ev.Origin.GetDeviceId() != device {
		t.Errorf("event of CREATE: %v", ev)
	}
	moved, err := cl.Move(imap.UIDSetNum(imap.UID(b.ImapUid)), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, events)
	after := ev.GetMessageUpdated().GetMessage()
	if after.GetId() != b.Id || ev.Origin.GetDeviceId() != device {
		t.Fatalf("event of MOVE: %v", ev)
	}
	archive := e.mailbox(acct.Id, "Archive")
	if moved.UIDValidity != archive.ImapUidvalidity || moved.DestUIDs.String() != fmt.Sprint(after.ImapUid) ||
		moved.SourceUIDs.String() != fmt.Sprint(b.ImapUid) {
		t.Errorf("COPYUID %+v; the store: uidvalidity %d, uid %d", moved, archive.ImapUidvalidity, after.ImapUid)
	}

	// EXPUNGE of \Deleted.
	if _, err := cl.Store(imap.UIDSetNum(imap.UID(cMsg.ImapUid)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	next(t, events)
	gone, err := cl.Expunge().Collect()
	if err != nil || !slices.Equal(gone, []uint32{2}) {
		t.Errorf("EXPUNGE: %v %v (want sequence 2: b moved out before)", gone, err)
	}
	if ev := next(t, events); ev.GetMessageDeleted().GetMessageId() != cMsg.Id || ev.Origin.GetDeviceId() != device {
		t.Errorf("event of EXPUNGE: %v", ev)
	}

	// APPEND: APPENDUID is the store's.
	raw := testMail("appended")
	app := cl.Append("Archive", int64(len(raw)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	app.Write([]byte(raw))
	app.Close()
	appData, err := app.Wait()
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, events)
	created := ev.GetMessageCreated().GetMessage()
	if created == nil || ev.Origin.GetDeviceId() != device || appData.UID != imap.UID(created.ImapUid) || appData.UIDValidity != archive.ImapUidvalidity {
		t.Errorf("APPEND: %+v, event %v", appData, ev)
	}
	if !bytes.Equal(e.rawMsg(created.Id), []byte(raw)) {
		t.Error("appended message differs")
	}

	// COPY: a new message in the destination, the original stays.
	cp, err := cl.Copy(imap.UIDSetNum(imap.UID(a.ImapUid)), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	ev = next(t, events)
	copied := ev.GetMessageCreated().GetMessage()
	if copied == nil || copied.MailboxId != archive.Id || cp.DestUIDs.String() != fmt.Sprint(copied.ImapUid) || !slices.Contains(copied.Flags, `\Flagged`) {
		t.Errorf("COPY: %+v, event %v", cp, ev)
	}
	if !bytes.Equal(e.rawMsg(copied.Id), e.rawMsg(a.Id)) {
		t.Error("copied message differs")
	}
	st, err := cl.Status("Archive", &imap.StatusOptions{NumMessages: true, UIDNext: true}).Wait()
	if err != nil || *st.NumMessages != 3 {
		t.Errorf("STATUS Archive: %+v %v", st, err)
	}
}

// TestIdlePush: changes made through the gRPC API reach a client IDLEing
// on the gateway: EXISTS for a new message, FETCH FLAGS for a flag,
// EXPUNGE for a deletion.
func TestIdlePush(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	first := e.appendMsg(inbox.Id, testMail("first"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	type update struct {
		exists  uint32
		expunge uint32
		flags   []imap.Flag
	}
	updates := make(chan update, 100)
	c := gw.login(t, "work", tok, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				updates <- update{exists: *d.NumMessages}
			}
		},
		Expunge: func(seq uint32) { updates <- update{expunge: seq} },
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			updates <- update{flags: buf.Flags}
		},
	}})
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	wait := func(what string) update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(waitFor):
			t.Fatalf("no %s while IDLE", what)
			return update{}
		}
	}
	e.appendMsg(inbox.Id, testMail("second"))
	if u := wait("EXISTS"); u.exists != 2 {
		t.Errorf("after an append: %+v, want 2 EXISTS", u)
	}
	if _, err := e.mailboxes().UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: []string{first.Id}, Add: []string{`\Answered`}, DeviceId: "phone"}); err != nil {
		t.Fatal(err)
	}
	if u := wait("FETCH"); !slices.Equal(u.flags, []imap.Flag{imap.FlagAnswered}) {
		t.Errorf("after a flag change: %+v", u)
	}
	if _, err := e.mailboxes().DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{first.Id}, DeviceId: "phone"}); err != nil {
		t.Fatal(err)
	}
	if u := wait("EXPUNGE"); u.expunge != 1 {
		t.Errorf("after a deletion: %+v, want EXPUNGE 1", u)
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	// The view is right after IDLE: one message, the second.
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Envelope: true}).Collect()
	if err != nil || len(msgs) != 1 || msgs[0].Envelope.Subject != "second" {
		t.Errorf("FETCH 1 after IDLE: %v %v", msgs, err)
	}
}

// TestRestart: a new gateway (after the old one stopped) serves the same
// UIDVALIDITY and UIDs: they are the store's.
func TestRestart(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	for i := range 3 {
		e.appendMsg(inbox.Id, testMail(fmt.Sprint(i)))
	}
	tok, _ := e.token(false, acct.Id)
	snapshot := func(gw *gateway) (uint32, []imap.UID) {
		c := gw.login(t, "work", tok, nil)
		sel, err := c.Select("INBOX", nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		data, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
		if err != nil {
			t.Fatal(err)
		}
		c.Logout().Wait()
		return sel.UIDValidity, data.AllUIDs()
	}
	gw := e.gateway(nil)
	v1, uids1 := snapshot(gw)
	gw.stop()
	v2, uids2 := snapshot(e.gateway(nil))
	if v1 == 0 || v1 != v2 || len(uids1) != 3 || !slices.Equal(uids1, uids2) {
		t.Errorf("before: %d %v, after: %d %v", v1, uids1, v2, uids2)
	}
}

// TestBadInput: malformed commands get BAD, refused ones NO, and the
// session goes on.
func TestBadInput(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	e.appendMsg(inbox.Id, testMail("x"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(func(c *Config) { c.MaxMessageSize = 1000 })
	conn, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	readLine := func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(waitFor))
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return strings.TrimRight(l, "\r\n")
	}
	// tagged sends a command and returns its tagged answer.
	tagged := func(tag, cmd string) string {
		t.Helper()
		fmt.Fprintf(conn, "%s %s\r\n", tag, cmd)
		for {
			if l := readLine(); strings.HasPrefix(l, tag+" ") {
				return strings.TrimPrefix(l, tag+" ")
			}
		}
	}
	readLine() // greeting
	if got := tagged("a1", fmt.Sprintf("LOGIN work %s", tok)); !strings.HasPrefix(got, "OK") {
		t.Fatalf("LOGIN: %s", got)
	}
	for _, tc := range []struct{ cmd, want string }{
		{"FROBNICATE", "BAD"},
		{"SELECT INBOX", "OK"},
		// A malformed sequence set is a syntax error (beta.8 answered NO
		// [SERVERBUG]; pkg/imapserver's fork makes it BAD).
		{"FETCH 0:x FLAGS", "BAD"},
		{"FETCH 1:2,,3 FLAGS", "BAD"},
		{"FETCH 1 (FLAGS", "BAD"},
		{"UID FETCH 1:* (NOSUCHITEM)", "BAD"},
		{"STORE 1 +FLAGS (\\Seen", "BAD"},
		{"SELECT NoSuchMailbox", "NO"},
		{"SELECT INBOX", "OK"},
		{"COPY 1 NoSuchMailbox", "NO [TRYCREATE]"},
		{"APPEND INBOX {5000}", "NO [TOOBIG]"},
		{"NOOP", "OK"},
	} {
		if got := tagged("t", tc.cmd); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %s, want %s", tc.cmd, got, tc.want)
		}
	}
	// A command line longer than imapserver's 50 KiB ends the connection
	// (nothing after it could be parsed reliably): the server closes it.
	fmt.Fprintf(conn, "t SEARCH SUBJECT %s\r\n", strings.Repeat("x", 60<<10))
	conn.SetReadDeadline(time.Now().Add(waitFor))
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			break // closed, as expected
		}
		if strings.HasPrefix(l, "t OK") {
			t.Fatalf("a 60 KiB command was accepted: %.80s", l)
		}
	}
}

// TestLoginThrottle: after the failures allowed with one user name, even
// the right token is refused with that name from that address until the
// window passes, while another user name from the same address (another
// client behind the same NAT) still logs in; after the higher ceiling of
// failures of any names from the address, every login from it is
// refused.
func TestLoginThrottle(t *testing.T) {
	e := startEnv(t)
	acct, _ := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	home, _ := e.account("home", "bob@example.com")
	homeTok, _ := e.token(false, home.Id)
	gw := e.gateway(func(c *Config) { c.LoginFailures, c.LoginFailuresPerAddress, c.LoginWindow = 2, 4, time.Hour })
	for range 2 {
		if err := gw.client(t, nil).Login("work", "wrong").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("bad login: %v", err)
		}
	}
	if err := gw.client(t, nil).Login("WORK", tok).Wait(); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Errorf("login after the failures: %v, want NO [UNAVAILABLE]", err)
	}
	if err := gw.client(t, nil).Login("home", homeTok).Wait(); err != nil {
		t.Errorf("login with another user name from the same address: %v", err)
	}
	for _, user := range []string{"x", "y"} {
		if err := gw.client(t, nil).Login(user, "wrong").Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Fatalf("bad login as %s: %v", user, err)
		}
	}
	if err := gw.client(t, nil).Login("home", homeTok).Wait(); imapCode(err) != imap.ResponseCodeUnavailable {
		t.Errorf("login after the address's failures: %v, want NO [UNAVAILABLE]", err)
	}
}

// TestPreAuthConnsPerAddress: one address has at most
// MaxPreAuthConnsPerAddress connections not logged in; one more is told
// BYE; once one logs in, another may connect.
func TestPreAuthConnsPerAddress(t *testing.T) {
	e := startEnv(t)
	acct, _ := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(func(c *Config) { c.MaxPreAuthConnsPerAddress = 2 })
	first, second := gw.client(t, nil), gw.client(t, nil)
	for _, c := range []*imapclient.Client{first, second} {
		if _, err := c.Capability().Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := imapclient.DialInsecure(gw.addr, nil); err == nil {
		_, err = c.Capability().Wait()
		c.Close()
		if err == nil {
			t.Errorf("a third connection not logged in was served")
		}
	}
	if err := first.Login("work", tok).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := gw.client(t, nil).Capability().Wait(); err != nil {
		t.Errorf("a connection after one of the others logged in: %v", err)
	}
}

// TestConnsPerToken: one token opens at most MaxConnsPerToken sessions.
func TestConnsPerToken(t *testing.T) {
	e := startEnv(t)
	acct, _ := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(func(c *Config) { c.MaxConnsPerToken = 2 })
	first := gw.login(t, "work", tok, nil)
	gw.login(t, "work", tok, nil)
	if err := gw.client(t, nil).Login("work", tok).Wait(); imapCode(err) != imap.ResponseCodeLimit {
		t.Errorf("third login: %v, want NO [LIMIT]", err)
	}
	if err := first.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	first.Close()
	// The slot is free once the server has closed the first session.
	deadline := time.Now().Add(waitFor)
	for {
		err := gw.client(t, nil).Login("work", tok).Wait()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("login after a logout: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRevokedTokenEndsSessions: the sessions of a revoked token end (BYE),
// also one that IDLEs and would otherwise go on getting the account's
// updates; another token's session goes on.
func TestRevokedTokenEndsSessions(t *testing.T) {
	e := startEnv(t)
	acct, _ := e.account("work", "ann@example.com")
	revoked, revokedID := e.token(false, acct.Id)
	kept, _ := e.token(false, acct.Id)
	gw := e.gateway(func(c *Config) { c.TokenCheck = 20 * time.Millisecond })
	idler := gw.login(t, "work", revoked, nil)
	if _, err := idler.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := idler.Idle(); err != nil {
		t.Fatal(err)
	}
	other := gw.login(t, "work", kept, nil)
	if _, err := mailbusv1.NewTokenServiceClient(e.admin).RevokeToken(callCtx(t), &mailbusv1.RevokeTokenRequest{TokenId: revokedID}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-idler.Closed():
	case <-time.After(waitFor):
		t.Fatal("the revoked token's session goes on")
	}
	if _, err := other.Select("INBOX", nil).Wait(); err != nil {
		t.Errorf("the other token's session: %v", err)
	}
}

// TestTwoReplicas: two gateways on one store are one service: a flag set
// and a message moved through one reach a client IDLEing on the other,
// with the same UIDs.
func TestTwoReplicas(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	if _, err := e.mailboxes().CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: acct.Id, Name: "Archive", DeviceId: "test"}); err != nil {
		t.Fatal(err)
	}
	tok, _ := e.token(false, acct.Id)
	gw1, gw2 := e.gateway(nil), e.gateway(nil)
	type update struct {
		uid     imap.UID
		flags   []imap.Flag
		expunge uint32
	}
	updates := make(chan update, 10)
	watcher := gw1.login(t, "work", tok, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			updates <- update{uid: buf.UID, flags: buf.Flags}
		},
		Expunge: func(seq uint32) { updates <- update{expunge: seq} },
	}})
	if _, err := watcher.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	idle, err := watcher.Idle()
	if err != nil {
		t.Fatal(err)
	}
	changer := gw2.login(t, "work", tok, nil)
	if _, err := changer.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := changer.Store(imap.UIDSetNum(imap.UID(a.ImapUid)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Collect(); err != nil {
		t.Fatal(err)
	}
	next := func() update {
		t.Helper()
		select {
		case u := <-updates:
			return u
		case <-time.After(waitFor):
			t.Fatal("no update on the other replica")
			return update{}
		}
	}
	if u := next(); u.uid != imap.UID(a.ImapUid) || !slices.Equal(u.flags, []imap.Flag{imap.FlagFlagged}) {
		t.Errorf("the flag set on the other replica: %+v", u)
	}
	if _, err := changer.Move(imap.UIDSetNum(imap.UID(b.ImapUid)), "Archive").Wait(); err != nil {
		t.Fatal(err)
	}
	if u := next(); u.expunge != 2 {
		t.Errorf("the move on the other replica: %+v, want EXPUNGE 2", u)
	}
	idle.Close()
	idle.Wait()
}

// TestSelectAnswersAccess: SELECT and EXAMINE end with the access the
// client has: a read-only token's SELECT is [READ-ONLY] (RFC 3501 6.3.1),
// as EXAMINE is for every token.
func TestSelectAnswersAccess(t *testing.T) {
	e := startEnv(t)
	acct, _ := e.account("work", "ann@example.com")
	gw := e.gateway(nil)
	for _, tc := range []struct {
		readOnly bool
		cmd      string
		want     string
	}{
		{false, "SELECT INBOX", "OK [READ-WRITE] SELECT completed"},
		{false, "EXAMINE INBOX", "OK [READ-ONLY] EXAMINE completed"},
		{true, "SELECT INBOX", "OK [READ-ONLY] SELECT completed"},
		{true, "EXAMINE INBOX", "OK [READ-ONLY] EXAMINE completed"},
	} {
		tok, _ := e.token(tc.readOnly, acct.Id)
		w := gw.wire(t, "work", tok)
		if _, got := w.cmd(tc.cmd); got != tc.want {
			t.Errorf("read-only token %v, %s: %q, want %q", tc.readOnly, tc.cmd, got, tc.want)
		}
	}
}
