package imapsync_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

func startDovecot(t testing.TB) *dovecottest.Server {
	t.Helper()
	return dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}})
}

func dialDovecot(t testing.TB, s *dovecottest.Server) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialTLS(s.IMAPSAddr(), &imapclient.Options{TLSConfig: s.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func deliver(t testing.TB, s *dovecottest.Server, folder string, n int, flags ...string) {
	t.Helper()
	for i := range n {
		if err := s.Deliver("alice", folder, testMessage(i, folder), flags...); err != nil {
			t.Fatal(err)
		}
	}
}

func withRoots(s *dovecottest.Server) func(*imapsync.Config) {
	return func(c *imapsync.Config) { c.RootCAs = s.CertPool() }
}

// watch follows the account with WatchChanges from its current state (a
// second device).
type watch struct {
	mu  sync.Mutex
	evs []*mailbusv1.Event
}

func (e *env) watch(t testing.TB, accountID string) *watch {
	t.Helper()
	st, err := e.sync.GetState(ctxT(t), &mailbusv1.GetStateRequest{AccountId: accountID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := e.sync.WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: accountID, SinceState: st.State})
	if err != nil {
		t.Fatal(err)
	}
	w := &watch{}
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			if resp.Event != nil {
				w.mu.Lock()
				w.evs = append(w.evs, resp.Event)
				w.mu.Unlock()
			}
		}
	}()
	return w
}

func (w *watch) count(f func(*mailbusv1.Event) bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, ev := range w.evs {
		if f(ev) {
			n++
		}
	}
	return n
}

func aboutMessage(id string) func(*mailbusv1.Event) bool {
	return func(ev *mailbusv1.Event) bool {
		switch p := ev.Payload.(type) {
		case *mailbusv1.Event_MessageCreated:
			return p.MessageCreated.GetMessage().GetId() == id
		case *mailbusv1.Event_MessageUpdated:
			return p.MessageUpdated.GetMessage().GetId() == id
		case *mailbusv1.Event_MessageDeleted:
			return p.MessageDeleted.GetMessageId() == id
		}
		return false
	}
}

// TestDovecotSyncAndDevices: initial sync of several folders matches the
// server message for message; device A's \Seen and move reach the server
// and device B (WatchChanges) and a JetStream consumer see each once.
func TestDovecotSyncAndDevices(t *testing.T) {
	t.Run("default", func(t *testing.T) { testSyncAndDevices(t, nil) })
	// Without MOVE the move is COPY, \Deleted and UID EXPUNGE (COPYUID
	// gives the new UID); without CONDSTORE every flag is compared.
	t.Run("no-move-no-condstore", func(t *testing.T) { testSyncAndDevices(t, []string{"MOVE", "CONDSTORE", "QRESYNC"}) })
}

func testSyncAndDevices(t *testing.T, hide []string) {
	s := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}, HideCapabilities: hide})
	e := startStore(t)
	deliver(t, s, "INBOX", 12)
	deliver(t, s, "Archive", 3, `\Seen`)
	deliver(t, s, "Work/Projects", 4, `\Flagged`, `\Answered`)
	deliver(t, s, "Sent", 2, `\Seen`)
	if err := s.AddFlags("alice", "INBOX", 5, "$Important"); err != nil {
		t.Fatal(err)
	}
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	check := func(what string, folders ...string) {
		t.Helper()
		for _, f := range folders {
			var last error
			waitFor(t, what+" ("+f+")", func() bool {
				last = sameView(serverFolder(t, tp, f), e.storeFolder(t, a.Id, f))
				return last == nil
			})
		}
	}
	check("initial sync", "INBOX", "Archive", "Work/Projects", "Sent", "Trash", "Drafts")
	resp, err := e.mailboxes.ListMailboxes(ctxT(t), &mailbusv1.ListMailboxesRequest{AccountId: a.Id})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range resp.Mailboxes {
		want := map[string]mailbusv1.MailboxRole{"INBOX": mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX, "Trash": mailbusv1.MailboxRole_MAILBOX_ROLE_TRASH, "Sent": mailbusv1.MailboxRole_MAILBOX_ROLE_SENT, "Archive": mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE}
		if r, ok := want[m.Name]; ok && m.Role != r {
			t.Errorf("mailbox %s has role %v, want %v", m.Name, m.Role, r)
		}
	}
	waitFor(t, "status idle", func() bool {
		st := e.account(t, a.Id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})

	devB := e.watch(t, a.Id)
	js := e.consume(t, a.Id)
	inbox := e.storeFolder(t, a.Id, "INBOX")
	seen, moved := inbox[1].id, inbox[2].id
	ctx := ctxT(t)
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{seen}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{moved}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	// A separate plain client sees both.
	waitFor(t, "device changes on Dovecot", func() bool {
		in := serverFolder(t, tp, "INBOX")
		_, still := in[2]
		return strings.Contains(strings.Join(in[1].flags, " "), `\Seen`) && !still && len(serverFolder(t, tp, "Archive")) == 4
	})
	// A barrier: a later third-party change in each folder has been synced,
	// so the echoes of the write-backs have been seen too.
	if err := s.AddFlags("alice", "INBOX", 3, `\Flagged`); err != nil {
		t.Fatal(err)
	}
	if err := s.AddFlags("alice", "Archive", 1, `\Flagged`); err != nil {
		t.Fatal(err)
	}
	check("after write-back", "INBOX", "Archive")
	for _, m := range e.storeFolder(t, a.Id, "Archive") {
		if m.uid > 3 && m.id != moved {
			t.Errorf("the moved message got a new id %s (was %s)", m.id, moved)
		}
	}
	for name, c := range map[string]interface {
		count(func(*mailbusv1.Event) bool) int
	}{"device B": devB, "JetStream": js} {
		waitFor(t, name+" sees the barrier", func() bool { return c.count(aboutMessage(inbox[3].id)) >= 1 })
		if n := c.count(aboutMessage(seen)); n != 1 {
			t.Errorf("%s: %d events about the \\Seen message, want 1", name, n)
		}
		if n := c.count(aboutMessage(moved)); n != 1 {
			t.Errorf("%s: %d events about the moved message, want 1", name, n)
		}
	}
}

// TestDovecotThirdParty: flags, expunge and new mail in INBOX arrive
// through IDLE (the poll is an hour); then a renamed folder, a deleted one
// and changes in other folders arrive through the poll.
func TestDovecotThirdParty(t *testing.T) {
	t.Run("condstore", func(t *testing.T) { testThirdParty(t, nil) })
	// Dovecot still implements CONDSTORE, but imapsync must not use what
	// is not advertised: the fallback paths against a real server.
	t.Run("fallback", func(t *testing.T) { testThirdParty(t, []string{"CONDSTORE", "QRESYNC"}) })
}

func testThirdParty(t *testing.T, hide []string) {
	s := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}, HideCapabilities: hide})
	e := startStore(t)
	deliver(t, s, "INBOX", 5)
	deliver(t, s, "Work", 2)
	deliver(t, s, "Old", 1)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	check := func(what string, folders ...string) {
		t.Helper()
		for _, f := range folders {
			waitFor(t, what+" ("+f+")", func() bool {
				return sameView(serverFolder(t, tp, f), e.storeFolder(t, a.Id, f)) == nil
			})
		}
	}
	check("initial sync", "INBOX", "Work", "Old")
	js := e.consume(t, a.Id)
	if err := s.AddFlags("alice", "INBOX", 1, `\Seen`, "$label1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Expunge("alice", "INBOX", 2); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "INBOX", testMessage(77, "INBOX"), imap.FlagDraft)
	check("INBOX through IDLE", "INBOX")
	kinds := func(kind string) func(*mailbusv1.Event) bool {
		return func(ev *mailbusv1.Event) bool {
			switch ev.Payload.(type) {
			case *mailbusv1.Event_MessageCreated:
				return kind == "created"
			case *mailbusv1.Event_MessageUpdated:
				return kind == "updated"
			case *mailbusv1.Event_MessageDeleted:
				return kind == "deleted"
			case *mailbusv1.Event_MailboxUpdated:
				return kind == "mailbox.updated"
			case *mailbusv1.Event_MailboxDeleted:
				return kind == "mailbox.deleted"
			}
			return false
		}
	}
	waitFor(t, "events", func() bool {
		return js.count(kinds("created")) >= 1 && js.count(kinds("updated")) >= 1 && js.count(kinds("deleted")) >= 1
	})

	// Now let the poll run: rename Work, delete Old, change Work.
	workID := e.mailboxID(t, a.Id, "Work")
	if err := tp.Rename("Work", "Clients", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Delete("Old").Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "Clients", testMessage(5, "Clients"))
	if _, err := e.accounts.UpdateAccount(ctxT(t), &mailbusv1.UpdateAccountRequest{
		Account:    &mailbusv1.Account{Id: a.Id, PollInterval: durationpb.New(time.Second)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"poll_interval"}},
	}); err != nil {
		t.Fatal(err)
	}
	check("renamed folder", "Clients")
	if id := e.mailboxID(t, a.Id, "Clients"); id != workID {
		t.Errorf("renamed folder has id %s, want %s (a rename, not delete and create)", id, workID)
	}
	waitFor(t, "Old deleted", func() bool { return e.mailboxID(t, a.Id, "Old") == "" })
	waitFor(t, "mailbox events", func() bool {
		return js.count(kinds("mailbox.updated")) >= 1 && js.count(kinds("mailbox.deleted")) >= 1
	})
}

// TestDovecotParked: bad credentials and an unverifiable certificate park
// the account with a clear reason; insecure_skip_verify connects.
func TestDovecotParked(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	bad := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "wrong", func(a *mailbusv1.Account) { a.InsecureSkipVerify = true })
	untrusted := e.createAccount(t, s.IMAPAddr(), mailbusv1.Security_SECURITY_STARTTLS, "alice", "secret", nil)
	skip := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) { a.InsecureSkipVerify = true })
	startSync(t, e, nil) // no RootCAs: the test certificate does not verify
	for _, c := range []struct {
		id, reason string
	}{{bad.Id, "authentication failed"}, {untrusted.Id, "certificate"}} {
		waitFor(t, "parked: "+c.reason, func() bool {
			st := e.account(t, c.id).GetStatus()
			return st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED && strings.Contains(st.GetReason(), c.reason)
		})
	}
	waitFor(t, "insecure_skip_verify syncs", func() bool {
		return e.account(t, skip.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	// Updating the account un-parks it.
	if _, err := e.accounts.UpdateAccount(ctxT(t), &mailbusv1.UpdateAccountRequest{
		Account: &mailbusv1.Account{Id: bad.Id, Secret: "secret"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
	}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "un-parked", func() bool {
		return e.account(t, bad.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
}

func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

// TestDovecotKillDuringInitialSync stops imapsync in the middle of an
// initial sync; the next run fetches only what the store lacks.
//
// The kill comes while messages are fetched and sent to the store but
// not committed (their flush held back), and not while the store commits
// a batch: the store may finish a commit it began after imapsync is gone,
// and the count of stored messages the second run is checked against
// would then be short of what it finds (it failed so, 2 runs in 20).
func TestDovecotKillDuringInitialSync(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	const total = 300
	deliver(t, s, "INBOX", total)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	small := func(c *imapsync.Config) { c.RootCAs = s.CertPool(); c.FetchBatch = 10; c.ShutdownGrace = -1 }
	gate := &flushGate{}
	first := startSync(t, e, func(c *imapsync.Config) { small(c); c.StoreConn = gate.dial(t, e) })
	waitFor(t, "progress in account.status", func() bool {
		st := e.account(t, a.Id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC && st.GetProgress().GetMessagesTotal() == total && st.GetProgress().GetFoldersTotal() >= 1
	})
	waitFor(t, "part of the initial sync", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) >= 50 })
	gate.close()
	waitFor(t, "the store's answer to every flush sent", gate.settled)
	first.stop()
	have := len(e.storeFolder(t, a.Id, "INBOX"))
	if have >= total {
		t.Skipf("the initial sync finished before it could be stopped (%d messages)", have)
	}
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { small(c); c.Registry = reg })
	tp := dialDovecot(t, s)
	waitFor(t, "the rest of the initial sync", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
	if got := metricValue(t, reg, "mailbus_imapsync_messages_total"); int(got) != total-have {
		t.Errorf("second run fetched %v messages, want %d (%d of %d were stored)", got, total-have, have, total)
	}
}

// flushGate holds back the flushes of imapsync's ingest streams once
// closed (the store commits a batch on its flush), and counts the flushes
// sent and answered: closed and settled, the store has committed every
// batch it will of that imapsync, and holds the rest uncommitted.
type flushGate struct {
	mu             sync.Mutex
	closed         bool
	sent, answered int
}

// dial connects to e's store with the service token, through the gate.
func (g *flushGate) dial(t testing.TB, e *env) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil || method != mailbusv1.IngestService_IngestMessages_FullMethodName {
				return cs, err
			}
			return &gatedStream{ClientStream: cs, g: g}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func (g *flushGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}

// settled reports whether the gate is closed and every flush that went
// through it has been answered.
func (g *flushGate) settled() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed && g.answered >= g.sent
}

type gatedStream struct {
	grpc.ClientStream
	g *flushGate
}

func (s *gatedStream) SendMsg(m any) error {
	if req, ok := m.(*mailbusv1.IngestMessagesRequest); ok && req.Flush {
		s.g.mu.Lock()
		closed := s.g.closed
		if !closed {
			s.g.sent++
		}
		s.g.mu.Unlock()
		if closed {
			<-s.Context().Done()
			return s.Context().Err()
		}
	}
	return s.ClientStream.SendMsg(m)
}

func (s *gatedStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil {
		s.g.mu.Lock()
		s.g.answered++
		s.g.mu.Unlock()
	}
	return err
}

// trigger cuts an upstream connection right after a command containing
// word has been written, once: the server executes it, the client never
// hears the answer.
type trigger struct {
	word  string
	fired atomic.Bool
	ch    chan struct{}
}

type triggerConn struct {
	net.Conn
	tr *trigger
}

func (c *triggerConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if bytes.Contains(b, []byte(c.tr.word)) && c.tr.fired.CompareAndSwap(false, true) {
		time.Sleep(100 * time.Millisecond) // let the server act on it
		c.Conn.Close()
		close(c.tr.ch)
	}
	return n, err
}

// TestDovecotKillDuringWriteBack cuts the connection right after MOVE and
// APPEND reached the server, and restarts imapsync: the write-backs end
// applied, with no duplicate and no lost change.
func TestDovecotKillDuringWriteBack(t *testing.T) {
	for _, word := range []string{"MOVE", "APPEND"} {
		t.Run(word, func(t *testing.T) {
			s := startDovecot(t)
			e := startStore(t)
			deliver(t, s, "INBOX", 3)
			// Plain IMAP, so that the trigger sees the commands.
			a := e.createAccount(t, s.IMAPAddr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
			tr := &trigger{word: " " + word + " ", ch: make(chan struct{})}
			first := startSync(t, e, func(c *imapsync.Config) {
				c.RootCAs = s.CertPool()
				c.ShutdownGrace = -1 // a kill
				c.WrapConn = func(_ string, nc net.Conn) net.Conn { return &triggerConn{Conn: nc, tr: tr} }
			})
			tp := dialDovecot(t, s)
			waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
			ctx := ctxT(t)
			var id string
			target := "Archive"
			if word == "MOVE" {
				id = e.storeFolder(t, a.Id, "INBOX")[2].id
				if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{id}, ToMailboxId: e.mailboxID(t, a.Id, target), DeviceId: "A"}); err != nil {
					t.Fatal(err)
				}
			} else {
				target = "Drafts"
				resp, err := e.mailboxes.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: e.mailboxID(t, a.Id, target), Raw: testMessage(42, "Drafts"), Flags: []string{`\Draft`}, DeviceId: "A"})
				if err != nil {
					t.Fatal(err)
				}
				id = resp.Message.Id
			}
			select {
			case <-tr.ch:
			case <-time.After(waitLong):
				t.Fatal("the command was never sent")
			}
			first.stop()
			startSync(t, e, withRoots(s))
			waitFor(t, "write-back applied", func() bool {
				resp, err := e.ingest.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: a.Id})
				return err == nil && len(resp.Writebacks) == 0
			})
			waitFor(t, "views match", func() bool {
				return sameView(serverFolder(t, tp, target), e.storeFolder(t, a.Id, target)) == nil &&
					sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
			})
			got := e.storeFolder(t, a.Id, target)
			if len(got) != 1 {
				t.Fatalf("%s has %d messages in the store, want 1", target, len(got))
			}
			for _, m := range got {
				if m.id != id {
					t.Errorf("message id %s, want %s (no duplicate, same identity)", m.id, id)
				}
			}
		})
	}
}

// countingConn counts FETCH responses that carry a body.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	if bytes.Contains(b, []byte("BODY.PEEK[]")) {
		// Count the UIDs asked for in this UID FETCH.
		c.n.Add(1)
	}
	return c.Conn.Write(b)
}

// TestDovecotUIDValidity: a new UIDVALIDITY resyncs the folder; the store
// ends with the server's identities and no message twice.
func TestDovecotUIDValidity(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 20)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	// Consumed from before the initial sync, whose 20 message.created
	// events the relay may publish after the store has the messages:
	// counted from once all 20 are in.
	js := e.consume(t, a.Id)
	messageEvent := func(ev *mailbusv1.Event) bool {
		return ev.GetMessageCreated() != nil || ev.GetMessageDeleted() != nil || ev.GetMessageUpdated() != nil
	}
	created := func(ev *mailbusv1.Event) bool { return ev.GetMessageCreated() != nil }
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.RootCAs = s.CertPool(); c.Registry = reg })
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	waitFor(t, "the initial sync's events", func() bool { return js.count(created) >= 20 })
	initialEvents := js.count(messageEvent)
	before := e.storeFolder(t, a.Id, "INBOX")
	fetched := metricValue(t, reg, "mailbus_imapsync_messages_total")
	uv, err := s.ChangeUIDValidity("alice", "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	tp = dialDovecot(t, s) // Dovecot disconnected the old session
	waitFor(t, "resync", func() bool {
		st := e.storeFolder(t, a.Id, "INBOX")
		for _, m := range st {
			if m.uv != uv {
				return false
			}
		}
		return sameView(serverFolder(t, tp, "INBOX"), st) == nil
	})
	after := e.storeFolder(t, a.Id, "INBOX")
	kept := 0
	for uid, m := range after {
		if before[uid].id == m.id {
			kept++
		}
	}
	refetched := metricValue(t, reg, "mailbus_imapsync_messages_total") - fetched
	t.Logf("UIDVALIDITY change: %d of %d messages kept their id; %v bodies fetched again", kept, len(after), refetched)
	// Devices see nothing of it: after a barrier (one new message), the
	// only message event is that message's creation.
	deliver(t, s, "INBOX", 1)
	waitFor(t, "the barrier message", func() bool { return js.count(created) >= 21 })
	if n := js.count(messageEvent) - initialEvents; n != 1 {
		t.Errorf("%d message events after the UIDVALIDITY change, want 1 (the barrier)", n)
	}
	if kept != len(after) || refetched != 0 {
		t.Errorf("after the UIDVALIDITY change %d of %d messages kept their id and %v bodies were fetched again; want all kept, none fetched", kept, len(after), refetched)
	}
}

// TestDovecotIdleReconnect cuts every connection; imapsync reconnects and
// catches up on mail delivered meanwhile (the poll is an hour: only the
// IDLE connection's reconnect can notice).
func TestDovecotIdleReconnect(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 2)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	gate := &gateDialer{}
	sy := startSync(t, e, func(c *imapsync.Config) {
		c.RootCAs = s.CertPool()
		c.RetryMin, c.RetryMax = 200*time.Millisecond, 400*time.Millisecond
		c.WrapConn = gate.wrap
	})
	_ = sy
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	waitFor(t, "IDLE running", func() bool { return gate.count() >= 2 })
	gate.block(true)
	gate.cutAll()
	deliver(t, s, "INBOX", 1)
	appendMsg(t, tp, "INBOX", testMessage(99, "INBOX"))
	time.Sleep(300 * time.Millisecond) // a reconnect attempt fails meanwhile
	gate.block(false)
	waitFor(t, "caught up", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
}

// gateDialer tracks connections, can cut them and refuse new ones.
type gateDialer struct {
	mu      sync.Mutex
	conns   []net.Conn
	total   int
	blocked bool
}

func (g *gateDialer) wrap(_ string, nc net.Conn) net.Conn {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total++
	if g.blocked {
		nc.Close()
		return &deadConn{nc}
	}
	g.conns = append(g.conns, nc)
	return nc
}

func (g *gateDialer) count() int   { g.mu.Lock(); defer g.mu.Unlock(); return len(g.conns) }
func (g *gateDialer) block(b bool) { g.mu.Lock(); g.blocked = b; g.mu.Unlock() }
func (g *gateDialer) cutAll() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, c := range g.conns {
		c.Close()
	}
	g.conns = nil
}

type deadConn struct{ net.Conn }

func (d *deadConn) Read([]byte) (int, error)  { return 0, io.ErrUnexpectedEOF }
func (d *deadConn) Write([]byte) (int, error) { return 0, errors.New("blocked") }

// TestDovecotSilentConnection freezes every connection (no RST, no data:
// a dead peer): the IDLE restart and the operation deadlines notice, the
// connections are replaced and the new mail is caught up.
func TestDovecotSilentConnection(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 2)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	fz := &freezer{}
	startSync(t, e, func(c *imapsync.Config) {
		c.RootCAs = s.CertPool()
		c.Timeout = time.Second
		c.IdleRestart = 300 * time.Millisecond
		c.WrapConn = fz.wrap
	})
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	fz.freezeAll()
	deliver(t, s, "INBOX", 1)
	waitFor(t, "caught up on new connections", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
}

// freezer makes connections silent: reads block until the connection is
// closed, writes vanish.
type freezer struct {
	mu    sync.Mutex
	conns []*frozenConn
}

type frozenConn struct {
	net.Conn
	frozen atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func (f *freezer) wrap(_ string, nc net.Conn) net.Conn {
	c := &frozenConn{Conn: nc, closed: make(chan struct{})}
	f.mu.Lock()
	f.conns = append(f.conns, c)
	f.mu.Unlock()
	return c
}

func (f *freezer) freezeAll() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.conns {
		c.frozen.Store(true)
	}
	f.conns = nil
}

func (c *frozenConn) Read(b []byte) (int, error) {
	if c.frozen.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	if c.frozen.Load() {
		<-c.closed
		return 0, net.ErrClosed
	}
	return n, err
}

func (c *frozenConn) Write(b []byte) (int, error) {
	if c.frozen.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

func (c *frozenConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// TestDovecotUIDValidityPendingWriteBack: a device's flag change waits
// while the folder's UIDVALIDITY changes; it is applied to the rebound
// message, which keeps its id.
func TestDovecotUIDValidityPendingWriteBack(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 5)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	first := startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	first.stop()
	id := e.storeFolder(t, a.Id, "INBOX")[3].id
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ChangeUIDValidity("alice", "INBOX"); err != nil {
		t.Fatal(err)
	}
	tp = dialDovecot(t, s)
	startSync(t, e, withRoots(s))
	waitFor(t, "the flag on the server and the views equal", func() bool {
		srv := serverFolder(t, tp, "INBOX")
		return strings.Contains(strings.Join(srv[3].flags, " "), `\Flagged`) && sameView(srv, e.storeFolder(t, a.Id, "INBOX")) == nil
	})
	if got := e.storeFolder(t, a.Id, "INBOX")[3].id; got != id {
		t.Errorf("message id %s, want %s", got, id)
	}
}

// TestDovecotIdleFolders: a folder named in idle_folders is IDLEd on its
// own connection (the poll is an hour, so only IDLE can notice).
func TestDovecotIdleFolders(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "Lists", 1)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
		a.IdleFolders = []string{"Lists"}
	})
	startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "Lists"), e.storeFolder(t, a.Id, "Lists")) == nil })
	appendMsg(t, tp, "Lists", testMessage(7, "Lists"))
	waitFor(t, "Lists through IDLE", func() bool { return sameView(serverFolder(t, tp, "Lists"), e.storeFolder(t, a.Id, "Lists")) == nil })
}

// TestDovecotDelete: a device's delete moves the message to Trash on the
// server (where the next sync shows it); deleting it from Trash expunges
// it.
func TestDovecotDelete(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 2)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	ctx := ctxT(t)
	if _, err := e.mailboxes.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: a.Id, MessageIds: []string{e.storeFolder(t, a.Id, "INBOX")[1].id}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "moved to Trash on the server, and the store follows", func() bool {
		return len(serverFolder(t, tp, "INBOX")) == 1 && len(serverFolder(t, tp, "Trash")) == 1 &&
			sameView(serverFolder(t, tp, "Trash"), e.storeFolder(t, a.Id, "Trash")) == nil &&
			sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
	var inTrash string
	for _, m := range e.storeFolder(t, a.Id, "Trash") {
		inTrash = m.id
	}
	if _, err := e.mailboxes.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: a.Id, MessageIds: []string{inTrash}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "expunged from Trash", func() bool {
		return len(serverFolder(t, tp, "Trash")) == 0 && len(e.storeFolder(t, a.Id, "Trash")) == 0
	})
}

// TestDovecotGracefulShutdown: stopping imapsync ends IDLE and logs out of
// every connection (Dovecot logs "Logged out", not a dropped connection).
func TestDovecotGracefulShutdown(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	sy := startSync(t, e, withRoots(s))
	waitFor(t, "idle", func() bool { return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE })
	waitFor(t, "two sessions", func() bool { return strings.Count(s.LogTail(100), "Login: user=<alice>") >= 2 })
	sy.stop()
	waitFor(t, "both logged out", func() bool { return strings.Count(s.LogTail(100), "Disconnected: Logged out") >= 2 })
	if tail := s.LogTail(100); strings.Contains(tail, "Connection closed") && strings.Contains(tail, "imap(alice)") && strings.Contains(tail, "IDLE running") {
		t.Errorf("a session was dropped during IDLE:\n%s", tail)
	}
}

// TestDovecotWriteBackDuringInitialSync: a device change reaches the
// server while a long initial sync is still going on.
func TestDovecotWriteBackDuringInitialSync(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	const total = 300
	deliver(t, s, "INBOX", total)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.RootCAs = s.CertPool(); c.FetchBatch = 5; c.Registry = reg })
	tp := dialDovecot(t, s)
	var id string
	waitFor(t, "the newest messages", func() bool {
		m, ok := e.storeFolder(t, a.Id, "INBOX")[total]
		id = m.id
		return ok
	})
	if _, err := e.mailboxes.UpdateFlags(ctxT(t), &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	var stored int
	waitFor(t, "the flag on the server", func() bool {
		if _, err := tp.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			t.Fatal(err)
		}
		msgs, err := tp.Fetch(imap.UIDSetNum(total), &imap.FetchOptions{Flags: true}).Collect()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) == 1 && slices.Contains(msgs[0].Flags, imap.FlagFlagged) {
			stored = len(e.storeFolder(t, a.Id, "INBOX"))
			return true
		}
		return false
	})
	if stored >= total {
		t.Skipf("the initial sync finished before the write-back could be seen (%d stored)", stored)
	}
	t.Logf("the write-back reached the server with %d of %d messages stored", stored, total)
	waitFor(t, "the rest", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	// The initial sync paused for the write-back and went on: once every
	// folder's is done (the account idle), one initial sync of each
	// folder, not one per part.
	waitFor(t, "the account idle", func() bool {
		return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	folders := len(e.mailboxNames(t, a.Id))
	if n := counterValues(t, reg, "mailbus_imapsync_folder_syncs_total")["initial"]; n != float64(folders) {
		t.Errorf("mailbus_imapsync_folder_syncs_total{kind=\"initial\"} = %v, want %d (one per folder)", n, folders)
	}
}
