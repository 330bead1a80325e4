package imapgw

import (
	"bufio"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// wire is a raw IMAP connection, for exact response text and bad input.
type wire struct {
	t    testing.TB
	conn net.Conn
	r    *bufio.Reader
	tags int
}

func (gw *gateway) wire(t testing.TB, user, token string) *wire {
	t.Helper()
	conn, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w := &wire{t: t, conn: conn, r: bufio.NewReader(conn)}
	w.line() // greeting
	if _, got := w.cmd("LOGIN " + user + " " + token); !strings.HasPrefix(got, "OK") {
		t.Fatalf("LOGIN: %s", got)
	}
	return w
}

func (w *wire) line() string {
	w.t.Helper()
	w.conn.SetReadDeadline(time.Now().Add(waitFor))
	l, err := w.r.ReadString('\n')
	if err != nil {
		w.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns its untagged responses and its tagged
// answer (without the tag).
func (w *wire) cmd(cmd string) (untagged []string, tagged string) {
	w.t.Helper()
	w.tags++
	tag := fmt.Sprintf("w%d", w.tags)
	fmt.Fprintf(w.conn, "%s %s\r\n", tag, cmd)
	for {
		l := w.line()
		if strings.HasPrefix(l, tag+" ") {
			return untagged, strings.TrimPrefix(l, tag+" ")
		}
		untagged = append(untagged, l)
	}
}

// ok sends a command that must succeed and returns its untagged
// responses.
func (w *wire) ok(cmd string) []string {
	w.t.Helper()
	untagged, tagged := w.cmd(cmd)
	if !strings.HasPrefix(tagged, "OK") {
		w.t.Fatalf("%s: %s", cmd, tagged)
	}
	return untagged
}

// noopUntil sends NOOP until an untagged response contains want and
// returns it (the gateway learns of another device's change from the
// store's event stream, a moment after the change).
func (w *wire) noopUntil(want string) string {
	w.t.Helper()
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		for _, l := range w.ok("NOOP") {
			if strings.Contains(l, want) {
				return l
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	w.t.Fatalf("no untagged response with %q", want)
	return ""
}

var highestModSeqRE = regexp.MustCompile(`^\* OK \[HIGHESTMODSEQ (\d+)\]`)

// selectModSeq selects a mailbox and returns its HIGHESTMODSEQ.
func (w *wire) selectModSeq(cmd string) uint64 {
	w.t.Helper()
	for _, l := range w.ok(cmd) {
		if m := highestModSeqRE.FindStringSubmatch(l); m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			return n
		}
	}
	w.t.Fatalf("%s: no HIGHESTMODSEQ", cmd)
	return 0
}

func (e *env) setFlags(accountID, id string, add ...string) *mailbusv1.UpdateFlagsResponse {
	e.t.Helper()
	resp, err := e.mailboxes().UpdateFlags(callCtx(e.t), &mailbusv1.UpdateFlagsRequest{AccountId: accountID, MessageIds: []string{id}, Add: add, DeviceId: "phone"})
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// TestCondStoreModSeq: MODSEQ is the message's state in the store; a flag
// change by another device (the gRPC API) raises it, reaches the client
// as an unsolicited FETCH with MODSEQ once CONDSTORE is enabled, and is
// what FETCH (CHANGEDSINCE old) returns; HIGHESTMODSEQ grows with the
// flag change and with an expunge (also of the message changed last),
// STATUS tells it, and a restarted gateway announces the same.
func TestCondStoreModSeq(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	w := gw.wire(t, "work", tok)

	if caps := w.ok("CAPABILITY"); len(caps) != 1 || !slices.Contains(strings.Fields(caps[0]), "CONDSTORE") {
		t.Errorf("CAPABILITY: %q", caps)
	}
	if got := w.ok("ENABLE CONDSTORE"); !slices.Equal(got, []string{"* ENABLED CONDSTORE"}) {
		t.Errorf("ENABLE CONDSTORE: %q", got)
	}
	highest := w.selectModSeq("SELECT INBOX")
	if highest < b.State {
		t.Errorf("HIGHESTMODSEQ %d below the last message's state %d", highest, b.State)
	}
	want := []string{
		fmt.Sprintf("* 1 FETCH (UID %d FLAGS () MODSEQ (%d))", a.ImapUid, a.State),
		fmt.Sprintf("* 2 FETCH (UID %d FLAGS () MODSEQ (%d))", b.ImapUid, b.State),
	}
	if got := w.ok("UID FETCH 1:* (FLAGS MODSEQ)"); !slices.Equal(got, want) {
		t.Errorf("UID FETCH MODSEQ: %q, want %q", got, want)
	}

	// Another device flags a: an unsolicited FETCH with its new MODSEQ.
	changed := e.setFlags(acct.Id, a.Id, `\Flagged`)
	if changed.State <= highest {
		t.Fatalf("the flag change's state %d is not above %d", changed.State, highest)
	}
	wantA := fmt.Sprintf("* 1 FETCH (UID %d FLAGS (\\Flagged) MODSEQ (%d))", a.ImapUid, changed.State)
	if got := w.noopUntil("FETCH"); got != wantA {
		t.Errorf("unsolicited FETCH: %q, want %q", got, wantA)
	}
	// CHANGEDSINCE the old HIGHESTMODSEQ: only a, with MODSEQ (implied).
	if got := w.ok(fmt.Sprintf("UID FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", highest)); !slices.Equal(got, []string{wantA}) {
		t.Errorf("FETCH CHANGEDSINCE %d: %q, want %q", highest, got, wantA)
	}
	if got := w.ok(fmt.Sprintf("FETCH 1:* (FLAGS) (CHANGEDSINCE %d)", changed.State)); len(got) != 0 {
		t.Errorf("FETCH CHANGEDSINCE the latest state: %q, want nothing", got)
	}

	// HIGHESTMODSEQ grew with the flag change.
	w2 := gw.wire(t, "work", tok)
	afterFlag := w2.selectModSeq("EXAMINE INBOX")
	if afterFlag < changed.State {
		t.Errorf("HIGHESTMODSEQ after the flag change: %d, want at least %d", afterFlag, changed.State)
	}
	// ... and with the expunge of a, the message changed last: the
	// highest MODSEQ of the messages left (b's) is below what was
	// announced, HIGHESTMODSEQ must still grow.
	del, err := e.mailboxes().DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{a.Id}, DeviceId: "phone"})
	if err != nil {
		t.Fatal(err)
	}
	afterExpunge := w2.selectModSeq("EXAMINE INBOX")
	if afterExpunge <= afterFlag || afterExpunge < del.State {
		t.Errorf("HIGHESTMODSEQ after the expunge: %d, want above %d and at least %d", afterExpunge, afterFlag, del.State)
	}
	st := w2.ok("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
	if wantSt := fmt.Sprintf("* STATUS INBOX (MESSAGES 1 HIGHESTMODSEQ %d)", afterExpunge); !slices.Equal(st, []string{wantSt}) {
		t.Errorf("STATUS: %q, want %q", st, wantSt)
	}

	// A restarted gateway announces the same (nothing changed since).
	gw.stop()
	w3 := e.gateway(nil).wire(t, "work", tok)
	if got := w3.selectModSeq("SELECT INBOX (CONDSTORE)"); got != afterExpunge {
		t.Errorf("HIGHESTMODSEQ after a restart: %d, want %d", got, afterExpunge)
	}
}

// TestCondStoreUnchangedSince: STORE (UNCHANGEDSINCE n) leaves a message
// changed after n (by another device, even before the gateway heard of
// it) as it is and names it in [MODIFIED]; the others are changed.
func TestCondStoreUnchangedSince(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	w := gw.wire(t, "work", tok)
	w.ok("SELECT INBOX")

	// Another device changes a after the client saw it; the client's
	// conditional STORE follows at once.
	changed := e.setFlags(acct.Id, a.Id, `\Answered`)
	untagged, tagged := w.cmd(fmt.Sprintf("UID STORE %d,%d (UNCHANGEDSINCE %d) +FLAGS (\\Flagged)", a.ImapUid, b.ImapUid, b.State))
	if want := fmt.Sprintf("OK [MODIFIED %d]", a.ImapUid); !strings.HasPrefix(tagged, want) {
		t.Errorf("conditional STORE: %s, want %s", tagged, want)
	}
	flagsOf := func(id string) []string {
		t.Helper()
		list, err := e.mailboxes().ListMessages(callCtx(t), &mailbusv1.ListMessagesRequest{MailboxId: inbox.Id, PageSize: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list.Messages {
			if m.Id == id {
				return m.Flags
			}
		}
		t.Fatalf("message %s gone", id)
		return nil
	}
	stateOf := func(id string) uint64 {
		t.Helper()
		list, err := e.mailboxes().ListMessages(callCtx(t), &mailbusv1.ListMessagesRequest{MailboxId: inbox.Id, PageSize: 10})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range list.Messages {
			if m.Id == id {
				return m.State
			}
		}
		t.Fatalf("message %s gone", id)
		return 0
	}
	if got := flagsOf(a.Id); slices.Contains(got, `\Flagged`) {
		t.Errorf("the modified message was changed: %v", got)
	}
	if got := flagsOf(b.Id); !slices.Contains(got, `\Flagged`) {
		t.Errorf("the unmodified message was not changed: %v", got)
	}
	// The FETCH of b's change carries its new MODSEQ (CONDSTORE is
	// enabled by the conditional STORE).
	var fetchB string
	for _, l := range untagged {
		if strings.Contains(l, fmt.Sprintf("UID %d ", b.ImapUid)) {
			fetchB = l
		}
	}
	if !strings.Contains(fetchB, `FLAGS (\Flagged) MODSEQ (`) {
		t.Errorf("FETCH of the changed message: %q (all: %q)", fetchB, untagged)
	}

	// A STORE conditional on the current state succeeds. With .SILENT the
	// client is still told the new MODSEQ, without FLAGS (RFC 7162
	// section 3.1.3); a HIGHESTMODSEQ may follow (its own change's event
	// may not be delivered yet).
	untagged, tagged = w.cmd(fmt.Sprintf("UID STORE %d (UNCHANGEDSINCE %d) +FLAGS.SILENT (\\Flagged)", a.ImapUid, changed.State))
	if strings.Contains(tagged, "MODIFIED") || !strings.HasPrefix(tagged, "OK") {
		t.Errorf("STORE UNCHANGEDSINCE the current state: %s", tagged)
	}
	if got := flagsOf(a.Id); !slices.Contains(got, `\Flagged`) {
		t.Errorf("after a STORE that was not conditional on an old state: %v", got)
	}
	if got, want := untaggedModSeqs(untagged), []string{fmt.Sprintf("* 1 FETCH (UID %d MODSEQ (%d))", a.ImapUid, stateOf(a.Id))}; !slices.Equal(got, want) {
		t.Errorf("STORE .SILENT with CONDSTORE: %q, want %q", untagged, want)
	}
	// UNCHANGEDSINCE 0 fails for every message (sequence numbers).
	if _, tagged := w.cmd("STORE 1:* (UNCHANGEDSINCE 0) -FLAGS (\\Flagged)"); !strings.HasPrefix(tagged, "OK [MODIFIED 1:2]") {
		t.Errorf("STORE UNCHANGEDSINCE 0: %s", tagged)
	}
	if got := flagsOf(b.Id); !slices.Contains(got, `\Flagged`) {
		t.Errorf("STORE UNCHANGEDSINCE 0 changed a message: %v", got)
	}
}

// TestCondStoreSearch: SEARCH MODSEQ finds the messages changed at or
// after a mod-sequence and tells the highest of theirs, in SEARCH and
// ESEARCH.
func TestCondStoreSearch(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	c3 := e.appendMsg(inbox.Id, testMail("c"))
	changed := e.setFlags(acct.Id, a.Id, `\Seen`)
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	w := gw.wire(t, "work", tok)
	w.ok("SELECT INBOX")
	if got, want := w.ok(fmt.Sprintf("SEARCH MODSEQ %d", changed.State)), fmt.Sprintf("* SEARCH 1 (MODSEQ %d)", changed.State); !slices.Equal(got, []string{want}) {
		t.Errorf("SEARCH MODSEQ: %q, want %q", got, want)
	}
	got := w.ok(fmt.Sprintf(`UID SEARCH RETURN (ALL) MODSEQ "/flags/\\draft" all %d NOT SEEN`, b.State))
	if want := fmt.Sprintf(`* ESEARCH (TAG "w%d") UID ALL %d:%d MODSEQ %d`, w.tags, b.ImapUid, c3.ImapUid, c3.State); !slices.Equal(got, []string{want}) {
		t.Errorf("UID SEARCH RETURN (ALL) MODSEQ: %q, want %q", got, want)
	}
	// No MODSEQ key: no MODSEQ in the answer.
	if got := w.ok("SEARCH SEEN"); !slices.Equal(got, []string{"* SEARCH 1"}) {
		t.Errorf("SEARCH SEEN: %q", got)
	}

	// The same through go-imap's client.
	c := gw.login(t, "work", tok, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	data, err := c.UIDSearch(&imap.SearchCriteria{ModSeq: &imap.SearchCriteriaModSeq{ModSeq: changed.State}}, nil).Wait()
	if err != nil || !slices.Equal(data.AllUIDs(), []imap.UID{imap.UID(a.ImapUid)}) || data.ModSeq != changed.State {
		t.Errorf("UID SEARCH MODSEQ: %+v %v", data, err)
	}
	st, err := c.Status("INBOX", &imap.StatusOptions{HighestModSeq: true}).Wait()
	if err != nil || st.HighestModSeq < changed.State {
		t.Errorf("STATUS HIGHESTMODSEQ: %+v %v", st, err)
	}
}

// TestCondStoreIdle: a client that enabled CONDSTORE (by SELECT
// (CONDSTORE)) and IDLEs gets
// another device's flag change as FETCH with the new MODSEQ.
func TestCondStoreIdle(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	fetched := make(chan *imapclient.FetchMessageBuffer, 10)
	c := gw.login(t, "work", tok, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Fetch: func(m *imapclient.FetchMessageData) {
			buf, _ := m.Collect()
			fetched <- buf
		},
	}})
	// SELECT (CONDSTORE) enables it (go-imap's client refuses ENABLE
	// CONDSTORE).
	sel, err := c.Select("INBOX", &imap.SelectOptions{CondStore: true}).Wait()
	if err != nil || sel.HighestModSeq < a.State {
		t.Fatalf("SELECT: %+v %v", sel, err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	changed := e.setFlags(acct.Id, a.Id, `\Flagged`)
	select {
	case buf := <-fetched:
		if buf.ModSeq != changed.State || buf.UID != imap.UID(a.ImapUid) || !slices.Equal(buf.Flags, []imap.Flag{imap.FlagFlagged}) {
			t.Errorf("FETCH while IDLE: UID %d FLAGS %v MODSEQ %d, want UID %d MODSEQ %d", buf.UID, buf.Flags, buf.ModSeq, a.ImapUid, changed.State)
		}
	case <-time.After(waitFor):
		t.Fatal("no FETCH while IDLE")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestCondStoreBadInput: malformed CONDSTORE parameters get BAD, and the
// session goes on; without CONDSTORE enabled, FETCH responses carry no
// MODSEQ.
func TestCondStoreBadInput(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	w := gw.wire(t, "work", tok)
	w.ok("SELECT INBOX")
	// Not enabled yet: STORE's FETCH has no MODSEQ.
	if got := w.ok("STORE 1 +FLAGS (\\Seen)"); !slices.Equal(got, []string{fmt.Sprintf("* 1 FETCH (UID %d FLAGS (\\Seen))", a.ImapUid)}) {
		t.Errorf("STORE without CONDSTORE: %q", got)
	}
	for _, cmd := range []string{
		"FETCH 1 (FLAGS) (CHANGEDSINCE 0)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE x)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE)",
		"FETCH 1 (FLAGS) (NOSUCHMODIFIER 1)",
		"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
		"STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)",
		"STORE 1 (NOSUCHMODIFIER 1) +FLAGS (\\Seen)",
		"STORE 1 (UNCHANGEDSINCE 1 +FLAGS (\\Seen)",
		"SELECT INBOX (NOSUCHPARAM)",
		"SEARCH MODSEQ x",
		"SEARCH MODSEQ \"/flags/\\\\seen\" nosuchtype 1",
		"STATUS INBOX (HIGHESTMODSEQ",
	} {
		if _, got := w.cmd(cmd); !strings.HasPrefix(got, "BAD") {
			t.Errorf("%s: %s, want BAD", cmd, got)
		}
	}
	// The session goes on, still selected (a SELECT with a bad
	// parameter fails before it closes the selected mailbox). A
	// HIGHESTMODSEQ may follow: the event of the client's own STORE may
	// not be delivered yet.
	if got := untaggedModSeqs(w.ok("FETCH 1 (MODSEQ)")); len(got) != 1 || !regexp.MustCompile(`^\* 1 FETCH \(MODSEQ \(\d+\)\)$`).MatchString(got[0]) {
		t.Errorf("FETCH MODSEQ after the bad input: %q", got)
	}
}

var uidValidityRE = regexp.MustCompile(`^\* OK \[UIDVALIDITY (\d+)\]`)

// TestQResync: with QRESYNC enabled, an expunge is told as VANISHED (by
// another device's deletion, EXPUNGE and MOVE), SELECT (QRESYNC (...))
// tells a reconnecting client what vanished and what changed since its
// state, and UID FETCH (CHANGEDSINCE n VANISHED) does the same for a
// UID set.
func TestQResync(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	a := e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	c := e.appendMsg(inbox.Id, testMail("c"))
	d := e.appendMsg(inbox.Id, testMail("d"))
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)

	w := gw.wire(t, "work", tok)
	if caps := w.ok("CAPABILITY"); len(caps) != 1 || !slices.Contains(strings.Fields(caps[0]), "QRESYNC") {
		t.Errorf("CAPABILITY: %q", caps)
	}
	// Not enabled: the QRESYNC syntax is BAD.
	for _, cmd := range []string{"SELECT INBOX (QRESYNC (1 1))", "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)"} {
		if _, got := w.cmd(cmd); !strings.HasPrefix(got, "BAD") {
			t.Errorf("%s without ENABLE QRESYNC: %s", cmd, got)
		}
	}
	if got := w.ok("ENABLE QRESYNC"); !slices.Equal(got, []string{"* ENABLED QRESYNC"}) {
		t.Errorf("ENABLE QRESYNC: %q", got)
	}
	var uidValidity string
	for _, l := range w.ok("SELECT INBOX") {
		if m := uidValidityRE.FindStringSubmatch(l); m != nil {
			uidValidity = m[1]
		}
	}
	before := w.selectModSeq("SELECT INBOX")

	// Another device flags b and deletes a: VANISHED, not EXPUNGE.
	flagged := e.setFlags(acct.Id, b.Id, `\Flagged`)
	if _, err := e.mailboxes().DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{a.Id}, DeviceId: "phone"}); err != nil {
		t.Fatal(err)
	}
	if got, want := w.noopUntil("VANISHED"), fmt.Sprintf("* VANISHED %d", a.ImapUid); got != want {
		t.Errorf("another device's deletion: %q, want %q", got, want)
	}
	// The client's own EXPUNGE and MOVE: VANISHED too.
	// Each ends with the HIGHESTMODSEQ after the expunge (RFC 7162
	// section 3.2.7): the account's state, which STATUS reads from the
	// store.
	statusModSeq := func() uint64 {
		t.Helper()
		got := w.ok("STATUS INBOX (HIGHESTMODSEQ)")
		if len(got) == 1 {
			if m := regexp.MustCompile(`HIGHESTMODSEQ (\d+)`).FindStringSubmatch(got[0]); m != nil {
				n, _ := strconv.ParseUint(m[1], 10, 64)
				return n
			}
		}
		t.Fatalf("STATUS: %q", got)
		return 0
	}
	w.ok(fmt.Sprintf("UID STORE %d +FLAGS.SILENT (\\Deleted)", c.ImapUid))
	got := w.ok("EXPUNGE")
	if want := []string{fmt.Sprintf("* VANISHED %d", c.ImapUid), fmt.Sprintf("* OK [HIGHESTMODSEQ %d] Highest", statusModSeq())}; !slices.Equal(got, want) {
		t.Errorf("EXPUNGE: %q, want %q", got, want)
	}
	w.ok("CREATE Archive")
	got = w.ok(fmt.Sprintf("UID MOVE %d Archive", d.ImapUid))
	if want := fmt.Sprintf("* OK [HIGHESTMODSEQ %d] Highest", statusModSeq()); len(got) != 3 || got[1] != fmt.Sprintf("* VANISHED %d", d.ImapUid) || got[2] != want {
		t.Errorf("MOVE: %q, want COPYUID, VANISHED %d, %q", got, d.ImapUid, want)
	}

	// A client reconnecting with its state from before: what vanished
	// (a, c, d; the store keeps no tombstones, so every UID of its range
	// not in the mailbox), then what changed (b), before the tagged OK.
	w2 := gw.wire(t, "work", tok)
	w2.ok("ENABLE QRESYNC")
	got = w2.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%s %d %d:%d))", uidValidity, before, a.ImapUid, d.ImapUid))
	wantVanished := fmt.Sprintf("* VANISHED (EARLIER) %d,%d:%d", a.ImapUid, c.ImapUid, d.ImapUid)
	wantFetch := fmt.Sprintf("* 1 FETCH (UID %d FLAGS (\\Flagged) MODSEQ (%d))", b.ImapUid, flagged.State)
	if i := slices.Index(got, wantVanished); i < 0 || len(got) != i+2 || got[i+1] != wantFetch {
		t.Errorf("SELECT (QRESYNC): %q, want ... %q, %q", got, wantVanished, wantFetch)
	}
	now := w2.selectModSeq(fmt.Sprintf("EXAMINE INBOX (QRESYNC (%s %d))", uidValidity, before))
	// With the current state: nothing vanished, nothing changed; and the
	// mailbox selected before is closed first.
	got = w2.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%s %d))", uidValidity, now))
	if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "VANISHED") || strings.Contains(l, "FETCH") }) ||
		!slices.ContainsFunc(got, func(l string) bool { return strings.HasPrefix(l, "* OK [CLOSED]") }) {
		t.Errorf("SELECT (QRESYNC) with the current state: %q", got)
	}
	// Another UIDVALIDITY: the client's cache is not of this mailbox,
	// nothing is told.
	got = w2.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%d %d))", 1, before))
	if slices.ContainsFunc(got, func(l string) bool { return strings.Contains(l, "VANISHED") || strings.Contains(l, "FETCH") }) {
		t.Errorf("SELECT (QRESYNC) with another UIDVALIDITY: %q", got)
	}
	// UID FETCH (CHANGEDSINCE n VANISHED).
	got = w2.ok(fmt.Sprintf("UID FETCH %d:%d (FLAGS) (CHANGEDSINCE %d VANISHED)", b.ImapUid, d.ImapUid, before))
	if want := []string{fmt.Sprintf("* VANISHED (EARLIER) %d:%d", c.ImapUid, d.ImapUid), wantFetch}; !slices.Equal(got, want) {
		t.Errorf("UID FETCH (CHANGEDSINCE VANISHED): %q, want %q", got, want)
	}
	for _, cmd := range []string{
		"UID FETCH 1:* (FLAGS) (VANISHED)",
		"FETCH 1:* (FLAGS) (CHANGEDSINCE 1 VANISHED)",
		"SELECT INBOX (QRESYNC (0 1))",
		"SELECT INBOX (QRESYNC (1 0))",
		"SELECT INBOX (QRESYNC (1))",
		"SELECT INBOX (QRESYNC (1 1 x))",
		"SELECT INBOX (QRESYNC (1 1 1:5 (1:2)))",
	} {
		if _, got := w2.cmd(cmd); !strings.HasPrefix(got, "BAD") {
			t.Errorf("%s: %s, want BAD", cmd, got)
		}
	}
	// With seq-match-data (read, not needed).
	w2.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%s %d 1:%d (1:2 %d:%d)))", uidValidity, before, d.ImapUid, a.ImapUid, b.ImapUid))
}

var (
	anyFetchModSeqRE = regexp.MustCompile(`^\* \d+ FETCH \(.*MODSEQ \((\d+)\)`)
	taggedModSeqRE   = regexp.MustCompile(`^OK \[HIGHESTMODSEQ (\d+)\]`)
)

// untaggedModSeqs is untagged without HIGHESTMODSEQ responses.
func untaggedModSeqs(untagged []string) []string {
	return slices.DeleteFunc(slices.Clone(untagged), func(l string) bool { return highestModSeqRE.MatchString(l) })
}

// adoptModSeq is the HIGHESTMODSEQ a client keeps after a command (RFC
// 7162 section 6): the value of a HIGHESTMODSEQ response code when the
// command's responses had one (which it must use even when it saw
// higher mod-sequences), else the highest MODSEQ of its FETCH responses
// when that is above the old value.
func adoptModSeq(old uint64, untagged []string, tagged string) uint64 {
	parse := func(s string) uint64 {
		n, _ := strconv.ParseUint(s, 10, 64)
		return n
	}
	if m := taggedModSeqRE.FindStringSubmatch(tagged); m != nil {
		return parse(m[1])
	}
	var code, seen uint64
	haveCode := false
	for _, l := range untagged {
		if m := highestModSeqRE.FindStringSubmatch(l); m != nil {
			code, haveCode = parse(m[1]), true
		}
		if m := anyFetchModSeqRE.FindStringSubmatch(l); m != nil {
			seen = max(seen, parse(m[1]))
		}
	}
	if haveCode {
		return code
	}
	return max(old, seen)
}

// TestCondStoreOwnChangeBehindHeldBackEvents: review finding 1. Another
// device deletes c, then flags b; the client's sequence STORE (or FETCH
// BODY[], which sets \Seen) may not be told the expunge, so both events
// stay held back, while the FETCH of its own change carries a MODSEQ
// above them. The gateway must tell HIGHESTMODSEQ up to what it
// delivered, so that a client that adopts it (RFC 7162 section 6) and
// reconnects at once learns both changes.
func TestCondStoreOwnChangeBehindHeldBackEvents(t *testing.T) {
	for _, cmd := range []string{`STORE 1 +FLAGS (\Seen)`, `FETCH 1 BODY[]`} {
		t.Run(strings.Fields(cmd)[0], func(t *testing.T) {
			e := startEnv(t)
			acct, inbox := e.account("work", "ann@example.com")
			e.appendMsg(inbox.Id, testMail("a"))
			b := e.appendMsg(inbox.Id, testMail("b"))
			c := e.appendMsg(inbox.Id, testMail("c"))
			tok, _ := e.token(false, acct.Id)
			gw := e.gateway(nil)
			w := gw.wire(t, "work", tok)
			w.ok("ENABLE QRESYNC")
			var uidValidity string
			var modSeq uint64
			for _, l := range w.ok("SELECT INBOX") {
				if m := uidValidityRE.FindStringSubmatch(l); m != nil {
					uidValidity = m[1]
				}
				modSeq = adoptModSeq(modSeq, []string{l}, "")
			}
			// An observer session of the same gateway shares the account's
			// stream: once it is told b's flag change, both events are in
			// the first session's queue too.
			observer := gw.wire(t, "work", tok)
			observer.ok("SELECT INBOX")
			if _, err := e.mailboxes().DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{c.Id}, DeviceId: "phone"}); err != nil {
				t.Fatal(err)
			}
			flagged := e.setFlags(acct.Id, b.Id, `\Flagged`)
			observer.noopUntil(`\Flagged`)

			untagged, tagged := w.cmd(cmd)
			if !strings.HasPrefix(tagged, "OK") {
				t.Fatalf("%s: %s", cmd, tagged)
			}
			modSeq = adoptModSeq(modSeq, untagged, tagged)
			if modSeq >= flagged.State {
				t.Errorf("%s: the client adopts HIGHESTMODSEQ %d, at or above the held-back flag change's %d (%q, %s)", cmd, modSeq, flagged.State, untagged, tagged)
			}

			// The client goes away before its next NOOP and reconnects.
			w2 := gw.wire(t, "work", tok)
			w2.ok("ENABLE QRESYNC")
			got := w2.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%s %d))", uidValidity, modSeq))
			if want := fmt.Sprintf("* VANISHED (EARLIER) %d", c.ImapUid); !slices.Contains(got, want) {
				t.Errorf("SELECT (QRESYNC (%s %d)): %q, want %q", uidValidity, modSeq, got, want)
			}
			if want := fmt.Sprintf("* 2 FETCH (UID %d FLAGS (\\Flagged) MODSEQ (%d))", b.ImapUid, flagged.State); !slices.Contains(got, want) {
				t.Errorf("SELECT (QRESYNC (%s %d)): %q, want %q", uidValidity, modSeq, got, want)
			}
		})
	}
}

// TestQResyncVanishedFromChangeLog: review finding 4. A client without
// known-uids reconnecting after changes in the account is told only the
// UIDs expunged after its mod-sequence (read from the account's change
// log), not every hole the mailbox has: b, deleted before, is not
// repeated; nothing at all when only another mailbox changed.
func TestQResyncVanishedFromChangeLog(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	if _, err := e.mailboxes().CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: acct.Id, Name: "Other", DeviceId: "test"}); err != nil {
		t.Fatal(err)
	}
	other := e.mailbox(acct.Id, "Other")
	e.appendMsg(inbox.Id, testMail("a"))
	b := e.appendMsg(inbox.Id, testMail("b"))
	c := e.appendMsg(inbox.Id, testMail("c"))
	e.appendMsg(inbox.Id, testMail("d"))
	deleteMsg := func(id string) {
		t.Helper()
		if _, err := e.mailboxes().DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{id}, DeviceId: "phone"}); err != nil {
			t.Fatal(err)
		}
	}
	deleteMsg(b.Id)
	tok, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)
	w := gw.wire(t, "work", tok)
	w.ok("ENABLE QRESYNC")
	var uidValidity string
	for _, l := range w.ok("SELECT INBOX") {
		if m := uidValidityRE.FindStringSubmatch(l); m != nil {
			uidValidity = m[1]
		}
	}
	before := w.selectModSeq("SELECT INBOX")
	deleteMsg(c.Id)
	after := w.selectModSeq("SELECT INBOX")
	e.appendMsg(other.Id, testMail("elsewhere"))

	vanished := func(modSeq uint64) []string {
		t.Helper()
		var out []string
		for _, l := range w.ok(fmt.Sprintf("SELECT INBOX (QRESYNC (%s %d))", uidValidity, modSeq)) {
			if strings.Contains(l, "VANISHED") {
				out = append(out, l)
			}
		}
		return out
	}
	if got, want := vanished(before), []string{fmt.Sprintf("* VANISHED (EARLIER) %d", c.ImapUid)}; !slices.Equal(got, want) {
		t.Errorf("QRESYNC from before c's deletion: %q, want %q", got, want)
	}
	if got := vanished(after); len(got) != 0 {
		t.Errorf("QRESYNC from after c's deletion (only another mailbox changed since): %q, want none", got)
	}
}
