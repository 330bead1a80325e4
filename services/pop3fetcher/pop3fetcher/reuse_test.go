package pop3fetcher_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// derived is the id a message stored under a reused UIDL gets.
func derived(uidl string, wire []byte) string {
	s := sha256.Sum256(wire)
	return uidl + "#" + hex.EncodeToString(s[:])[:16]
}

func uidls(stored []storedMessage) map[string]bool {
	out := map[string]bool{}
	for _, m := range stored {
		out[m.uidl] = true
	}
	return out
}

// deleteOnServer removes message n from user's maildrop as another POP3
// client would: DELE and QUIT.
func deleteOnServer(t *testing.T, srv *pop3test.Server, user, pw string, n int) {
	t.Helper()
	c, err := pop3.Dial(callCtx(t), srv.Addr(), &pop3.Options{Security: pop3.SecurityNone})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(callCtx(t), pop3.Credentials{Username: user, Password: pw}, pop3.MechanismUser); err != nil {
		t.Fatal(err)
	}
	if err := c.Dele(callCtx(t), n); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(callCtx(t)); err != nil {
		t.Fatal(err)
	}
	idle(t, srv)
}

// listReply is a LIST answer giving each message the size in sizes.
func listReply(sizes ...int) pop3test.Fault {
	var b strings.Builder
	b.WriteString("+OK\r\n")
	for i, s := range sizes {
		fmt.Fprintf(&b, "%d %d\r\n", i+1, s)
	}
	b.WriteString(".\r\n")
	return pop3test.ReplyBytes("LIST", []byte(b.String()))
}

// TestUIDLReusedAfterDeleteIsStored: in delete mode every fetched message
// leaves the server while its UIDL stays in the store. A server may give
// that UIDL to a new message (RFC 1939 section 7); the new message, of the
// same size as the old one, must be stored (under a derived id) before it
// is deleted, and only once.
func TestUIDLReusedAfterDeleteIsStored(t *testing.T) {
	e := startStore(t)
	first := pop3test.Message{UID: "1", Data: message(1)}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", first))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	f, _ := e.newFetcher(t)
	poll(t, f, acct)
	idle(t, srv)
	if n := len(srv.Messages("bob")); n != 0 {
		t.Fatalf("server holds %d after the first pass", n)
	}
	second := pop3test.Message{UID: "1", Data: message(2)}
	if len(second.Data) != len(first.Data) {
		t.Fatal("the test wants two messages of one size")
	}
	srv.Deliver("bob", second)
	res := poll(t, f, acct)
	idle(t, srv)
	if res.New != 1 || res.Reused != 1 || res.Fetched != 1 || res.Deleted != 1 || res.Known != 0 {
		t.Errorf("pass with the reused UIDL: %+v", res)
	}
	if n := len(srv.Messages("bob")); n != 0 {
		t.Errorf("server holds %d messages, want 0", n)
	}
	stored := e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{first, second}))
	if ids := uidls(stored); !ids["1"] || !ids[derived("1", second.Data)] {
		t.Errorf("stored ids %v, want 1 and %s", ids, derived("1", second.Data))
	}
	e.checkOneEventEach(t, acct.Id, stored)
	if res := poll(t, f, acct); res.Messages != 0 || res.New != 0 {
		t.Errorf("next pass: %+v", res)
	}
}

// TestReusedUIDLStoredOnceAcrossRetries: the pass that stores a message
// under a reused UIDL fails before DELE; the next pass downloads it again,
// finds its derived id in the store, deletes it and stores nothing.
func TestReusedUIDLStoredOnceAcrossRetries(t *testing.T) {
	e := startStore(t)
	first := pop3test.Message{UID: "r", Data: message(1)}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", first))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	f, _ := e.newFetcher(t)
	poll(t, f, acct)
	idle(t, srv)
	second := pop3test.Message{UID: "r", Data: message(2)}
	srv.Deliver("bob", second)
	srv.InjectFault(pop3test.Drop("DELE", 0).Once())
	if _, err := f.Poll(callCtx(t), acct); err == nil {
		t.Fatal("the pass with the dropped DELE succeeded")
	}
	idle(t, srv)
	if n := len(srv.Messages("bob")); n != 1 {
		t.Fatalf("server holds %d messages, want 1", n)
	}
	res := poll(t, f, acct)
	idle(t, srv)
	if res.New != 0 || res.Known != 1 || res.Deleted != 1 {
		t.Errorf("retry: %+v", res)
	}
	if n := len(srv.Messages("bob")); n != 0 {
		t.Errorf("server holds %d messages, want 0", n)
	}
	stored := e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{first, second}))
	e.checkOneEventEach(t, acct.Id, stored)
}

// TestTombstonedUIDLReusedInDeleteMode: a message fetched in delete mode
// and then deleted in the store leaves a tombstone; a new message under
// the same UIDL must be stored, not taken for the deleted one (which the
// store would acknowledge without storing it). "unlisted": the account
// has no live message left, only the tombstone (the store lists it all
// the same).
func TestTombstonedUIDLReusedInDeleteMode(t *testing.T) {
	for _, listed := range []bool{true, false} {
		t.Run(map[bool]string{true: "listed", false: "unlisted"}[listed], func(t *testing.T) {
			e := startStore(t)
			first := pop3test.Message{UID: "t", Data: message(1)}
			msgs := []pop3test.Message{first}
			if listed {
				msgs = append(msgs, pop3test.Message{UID: "other", Data: message(3)})
			}
			srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
			acct := e.fakeAccount(t, srv, "bob", "pw", dele)
			f, _ := e.newFetcher(t)
			poll(t, f, acct)
			idle(t, srv)
			for _, m := range e.stored(t, acct.Id) {
				if m.uidl != "t" {
					continue
				}
				if _, err := e.mailboxes.DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{m.id}, DeviceId: "test"}); err != nil {
					t.Fatal(err)
				}
			}
			second := pop3test.Message{UID: "t", Data: message(2)}
			srv.Deliver("bob", second)
			res := poll(t, f, acct)
			idle(t, srv)
			if res.New != 1 || res.Reused != 1 || res.Fetched != 1 || res.Deleted != 1 {
				t.Errorf("pass: %+v", res)
			}
			if n := len(srv.Messages("bob")); n != 0 {
				t.Errorf("server holds %d messages, want 0", n)
			}
			found := false
			for _, m := range e.stored(t, acct.Id) {
				if m.id != "" && m.uidl == derived("t", second.Data) && m.hash == sha(second.Data) {
					found = true
				}
			}
			if !found {
				t.Errorf("store holds %+v, without the second message under %s", e.stored(t, acct.Id), derived("t", second.Data))
			}
		})
	}
}

// TestUIDLReusedInKeepMode: another client deletes a message the fetcher
// stored in keep mode, and the server gives its UIDL to a new message of
// another size: the new message is stored, once.
func TestUIDLReusedInKeepMode(t *testing.T) {
	e := startStore(t)
	first := pop3test.Message{UID: "k", Data: message(1)}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", first))
	acct := e.fakeAccount(t, srv, "bob", "pw", keep)
	f, _ := e.newFetcher(t)
	poll(t, f, acct)
	idle(t, srv)
	deleteOnServer(t, srv, "bob", "pw", 1)
	second := pop3test.Message{UID: "k", Data: message(1000)}
	srv.Deliver("bob", second)
	res := poll(t, f, acct)
	idle(t, srv)
	if res.New != 1 || res.Reused != 1 || res.Fetched != 1 {
		t.Errorf("pass with the reused UIDL: %+v", res)
	}
	stored := e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{first, second}))
	e.checkOneEventEach(t, acct.Id, stored)
	retr := srv.CommandCount("RETR")
	res = poll(t, f, acct)
	idle(t, srv)
	if res.New != 0 || res.Known != 1 || srv.CommandCount("RETR") != retr {
		t.Errorf("next pass: %+v, RETR %d -> %d (the message stored under the derived id is known by its size)", res, retr, srv.CommandCount("RETR"))
	}
}

// TestInexactListSizesNoDuplicate: a server whose LIST sizes are not the
// sizes of what it sends. In delete mode a stored message left on the
// server (DELE failed) is compared by content and deleted, not stored a
// second time; in keep mode it is downloaded once to compare it, and not
// again.
func TestInexactListSizesNoDuplicate(t *testing.T) {
	t.Run("delete", func(t *testing.T) {
		e := startStore(t)
		msg := pop3test.Message{UID: "x", Data: message(1)}
		srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msg))
		acct := e.fakeAccount(t, srv, "bob", "pw", dele)
		f, _ := e.newFetcher(t)
		srv.InjectFault(pop3test.Drop("DELE", 0).Once())
		if _, err := f.Poll(callCtx(t), acct); err == nil {
			t.Fatal("the pass with the dropped DELE succeeded")
		}
		idle(t, srv)
		srv.InjectFault(listReply(len(msg.Data) - 7).Once())
		res := poll(t, f, acct)
		idle(t, srv)
		if res.New != 0 || res.Known != 1 || res.Deleted != 1 {
			t.Errorf("pass: %+v", res)
		}
		e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{msg}))
	})
	t.Run("keep", func(t *testing.T) {
		e := startStore(t)
		msg := pop3test.Message{UID: "x", Data: message(1)}
		srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msg))
		acct := e.fakeAccount(t, srv, "bob", "pw", keep)
		f, _ := e.newFetcher(t)
		poll(t, f, acct)
		idle(t, srv)
		srv.InjectFault(listReply(len(msg.Data) - 7))
		for i := range 2 {
			retr := srv.CommandCount("RETR")
			res := poll(t, f, acct)
			idle(t, srv)
			if res.New != 0 || res.Known != 1 {
				t.Errorf("pass %d: %+v", i, res)
			}
			if got, want := srv.CommandCount("RETR")-retr, 1-i; got != want {
				t.Errorf("pass %d: %d RETR, want %d", i, got, want)
			}
		}
		e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{msg}))
	})
}
