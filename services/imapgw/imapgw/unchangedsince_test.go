package imapgw

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

var fetchModSeqRE = regexp.MustCompile(`UID (\d+) MODSEQ \((\d+)\)`)

// TestCondStoreUnchangedSinceAtomic: another device's change committed
// while a conditional STORE runs, after anything the gateway may read for
// the STORE and just before its UpdateFlags, is seen: the client's
// UNCHANGEDSINCE (the MODSEQ it fetched) is below the message's state,
// so the message is named in [MODIFIED] and left as the other device
// made it; the other message is changed. A check read before the change
// (two calls) changes both.
func TestCondStoreUnchangedSinceAtomic(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	tok, _ := e.token(false, acct.Id)

	// The other device's change goes in front of the gateway's next
	// UpdateFlags, once armed.
	var armed atomic.Bool
	var interposed atomic.Pointer[mailbusv1.UpdateFlagsResponse]
	conn := e.dial("", grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == mailbusv1.MailboxService_UpdateFlags_FullMethodName && armed.CompareAndSwap(true, false) {
			resp, err := e.mailboxes().UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: []string{a.Id}, Add: []string{`\Answered`}, DeviceId: "phone"})
			if err != nil {
				return fmt.Errorf("the other device's change: %w", err)
			}
			interposed.Store(resp)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}))
	gw := e.gateway(func(cfg *Config) { cfg.StoreConn = conn })
	w := gw.wire(t, "work", tok)
	w.ok("SELECT INBOX")

	// The client reads the MODSEQs and stores conditionally on the highest.
	var seen uint64
	for _, l := range w.ok("UID FETCH 1:* (MODSEQ)") {
		if m := fetchModSeqRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[2], 10, 64)
			seen = max(seen, n)
		}
	}
	if seen == 0 {
		t.Fatal("FETCH MODSEQ: no mod-sequence")
	}
	armed.Store(true)
	untagged, tagged := w.cmd(fmt.Sprintf("UID STORE %d,%d (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)", a.ImapUid, b.ImapUid, seen))
	other := interposed.Load()
	if other == nil {
		t.Fatalf("the other device's change was not made during the STORE (%s)", tagged)
	}
	if other.State <= seen {
		t.Fatalf("the other device's change is at state %d, not above the client's %d", other.State, seen)
	}
	if want := fmt.Sprintf("OK [MODIFIED %d]", a.ImapUid); !strings.HasPrefix(tagged, want) {
		t.Errorf("conditional STORE: %s, want %s", tagged, want)
	}
	list, err := e.mailboxes().ListMessages(callCtx(t), &mailbusv1.ListMessagesRequest{MailboxId: inbox.Id, PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range list.Messages {
		switch m.Id {
		case a.Id:
			if !slices.Equal(m.Flags, []string{`\Answered`}) || m.State != other.State {
				t.Errorf("the modified message: flags %v state %d, want only the other device's change (\\Answered, state %d)", m.Flags, m.State, other.State)
			}
		case b.Id:
			if !slices.Contains(m.Flags, `\Flagged`) {
				t.Errorf("the unmodified message was not changed: %v", m.Flags)
			}
		}
	}
	for _, l := range untagged {
		if strings.Contains(l, fmt.Sprintf("UID %d ", a.ImapUid)) && strings.Contains(l, `\Flagged`) {
			t.Errorf("FETCH of the modified message with \\Flagged: %q", l)
		}
	}
}

// TestCondStoreUnchangedSinceNothingToChange: a conditional STORE that
// changes nothing (FLAGS () on messages without flags; the store refuses
// an empty change) still names the messages changed after UNCHANGEDSINCE
// (here by another device, a flag added and removed again) in
// [MODIFIED], and answers the others' flags.
func TestCondStoreUnchangedSinceNothingToChange(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	w := gw.wire(t, "work", tok)
	w.ok("SELECT INBOX")
	w.ok("ENABLE CONDSTORE")

	e.setFlags(acct.Id, a.Id, `$Later`)
	removed, err := e.mailboxes().UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: []string{a.Id}, Remove: []string{`$Later`}, DeviceId: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	// The view has the message without flags again, so the STORE has
	// nothing to change.
	w.noopUntil(fmt.Sprintf("UID %d FLAGS () MODSEQ (%d)", a.ImapUid, removed.State))
	untagged, tagged := w.cmd(fmt.Sprintf("UID STORE %d,%d (UNCHANGEDSINCE %d) FLAGS ()", a.ImapUid, b.ImapUid, b.State))
	if want := fmt.Sprintf("OK [MODIFIED %d]", a.ImapUid); !strings.HasPrefix(tagged, want) {
		t.Errorf("conditional STORE without change: %s, want %s", tagged, want)
	}
	var fetched []string
	for _, l := range untagged {
		if strings.Contains(l, " FETCH ") && strings.Contains(l, "FLAGS ()") {
			fetched = append(fetched, l)
		}
	}
	if len(fetched) != 1 || !strings.Contains(fetched[0], fmt.Sprintf("UID %d ", b.ImapUid)) {
		t.Errorf("FETCH responses %q, want one of UID %d", untagged, b.ImapUid)
	}
}

// TestCondStoreNothingToChangeListsByPages: the read of a STORE with
// nothing to change lists the UIDs' span in pages of up to 1,000, not in
// pages the size of the set: `UID STORE first,last` over 300 messages
// is one ListMessages call, not 150 (review of CONDSTORE, finding 2).
func TestCondStoreNothingToChangeListsByPages(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	var first, last *mailbusv1.MessageSummary
	for i := range 300 {
		m := e.appendMsg(inbox.Id, testMail(fmt.Sprint("m", i)))
		if first == nil {
			first = m
		}
		last = m
	}
	tok, _ := e.token(false, acct.Id)
	var lists atomic.Int32
	conn := e.dial("", grpc.WithUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == mailbusv1.MailboxService_ListMessages_FullMethodName {
			lists.Add(1)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}))
	gw := e.gateway(func(cfg *Config) { cfg.StoreConn = conn })
	w := gw.wire(t, "work", tok)
	w.ok("SELECT INBOX")
	w.ok("ENABLE CONDSTORE")
	before := lists.Load()
	w.ok(fmt.Sprintf("UID STORE %d,%d (UNCHANGEDSINCE %d) FLAGS ()", first.ImapUid, last.ImapUid, last.State))
	if n := lists.Load() - before; n != 1 {
		t.Errorf("ListMessages calls for a STORE of two messages 300 UIDs apart: %d, want 1", n)
	}
}
