package imapsync_test

import (
	"context"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemSyncBothWays runs the fallback paths (no CONDSTORE, no
// SPECIAL-USE) against imapmemserver: initial sync of several folders,
// third-party flag change, expunge and new mail, a device flag change and
// move written back, and a folder created upstream.
func TestMemSyncBothWays(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Archive", "Work")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 5 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	appendMsg(t, tp, "Work", testMessage(1, "Work"), imap.FlagSeen)
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, nil)

	check := func(what string, folders ...string) {
		t.Helper()
		for _, f := range folders {
			waitFor(t, what+" ("+f+")", func() bool {
				return sameView(serverFolder(t, tp, f), e.storeFolder(t, a.Id, f)) == nil
			})
		}
	}
	check("initial sync", "INBOX", "Archive", "Work")
	waitFor(t, "status idle", func() bool {
		return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})

	// Third party: flags, expunge, new mail.
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.UIDExpunge(imap.UIDSetNum(3)).Close(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "INBOX", testMessage(9, "INBOX"))
	check("third-party changes", "INBOX")

	// Device: \Seen on uid 1, move uid 4 to Archive.
	inbox := e.storeFolder(t, a.Id, "INBOX")
	ctx := ctxT(t)
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[1].id}, Add: []string{`\Seen`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{inbox[4].id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "device changes on the server", func() bool {
		s := serverFolder(t, tp, "INBOX")
		_, still := s[4]
		return len(s[1].flags) == 1 && s[1].flags[0] == `\Seen` && !still && len(serverFolder(t, tp, "Archive")) == 1
	})
	check("after write-back", "INBOX", "Archive")
	arch := e.storeFolder(t, a.Id, "Archive")
	for _, m := range arch {
		if m.id != inbox[4].id {
			t.Errorf("moved message has a new id %s, want %s", m.id, inbox[4].id)
		}
	}

	// A folder created upstream.
	if err := tp.Create("Later", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, tp, "Later", testMessage(1, "Later"))
	check("new folder", "Later")
}

// TestMemConflicts: a device's flag change and move of messages a third
// party expunged meanwhile fail, with writeback.failed events, and the
// store follows the server (the messages are deleted).
func TestMemConflicts(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Archive")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 3 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	sy := startSync(t, e, nil)
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	sy.stop()
	inbox := e.storeFolder(t, a.Id, "INBOX")
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.UIDExpunge(imap.UIDSetNum(1, 2)).Close(); err != nil {
		t.Fatal(err)
	}
	js := e.consume(t, a.Id)
	ctx := ctxT(t)
	if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{inbox[1].id}, Add: []string{`\Flagged`}, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: a.Id, MessageIds: []string{inbox[2].id}, ToMailboxId: e.mailboxID(t, a.Id, "Archive"), DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, nil)
	waitFor(t, "two failed write-backs", func() bool {
		return js.count(func(ev *mailbusv1.Event) bool { return ev.GetWritebackFailed() != nil }) == 2
	})
	waitFor(t, "the store follows the server", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil && len(e.storeFolder(t, a.Id, "Archive")) == 0
	})
	for _, id := range []string{inbox[1].id, inbox[2].id} {
		if _, err := e.mailboxes.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: id}); err == nil {
			t.Errorf("message %s still in the store", id)
		}
	}
}

// TestMemRetrying: an unreachable server is a temporary error (RETRYING);
// once it is back the account syncs.
func TestMemRetrying(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	// A port where nobody listens yet.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	a := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, nil)
	waitFor(t, "RETRYING", func() bool {
		st := e.account(t, a.Id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_RETRYING && strings.Contains(st.GetReason(), "dial")
	})
	// Now forward that port to the server.
	l, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				s, err := net.Dial("tcp", mem.addr)
				if err != nil {
					c.Close()
					return
				}
				go func() { io.Copy(s, c); s.Close() }()
				io.Copy(c, s)
				c.Close()
			}()
		}
	}()
	waitFor(t, "IDLE after the server came back", func() bool {
		return e.account(t, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
}

// listNames lists the server's mailboxes with a plain client.
func listNames(t testing.TB, c interface {
	List(ref, pattern string, options *imap.ListOptions) *imapclient.ListCommand
}) []string {
	t.Helper()
	l, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range l {
		out = append(out, d.Mailbox)
	}
	sort.Strings(out)
	return out
}

// TestMemDeviceFolderOpsAndAppend: folders created, renamed and deleted by
// a device, and a message it appends, reach the server; the appended
// message keeps its id (APPENDUID placement, no second copy).
func TestMemDeviceFolderOpsAndAppend(t *testing.T) {
	e := startStore(t)
	mem := startMem(t, "Drafts")
	tp := dialPlain(t, mem.addr, "alice", "secret")
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, nil)
	waitFor(t, "folders", func() bool { return e.mailboxID(t, a.Id, "Drafts") != "" })
	ctx := ctxT(t)
	mb, err := e.mailboxes.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: a.Id, Name: "Projects", DeviceId: "A"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "created upstream", func() bool { return slices.Contains(listNames(t, tp), "Projects") })
	if _, err := e.mailboxes.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: mb.Mailbox.Id, NewName: "Clients", DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "renamed upstream", func() bool {
		n := listNames(t, tp)
		return slices.Contains(n, "Clients") && !slices.Contains(n, "Projects")
	})
	app, err := e.mailboxes.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: e.mailboxID(t, a.Id, "Drafts"), Raw: testMessage(1, "Drafts"), Flags: []string{`\Draft`}, DeviceId: "A"})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "appended upstream", func() bool {
		return sameView(serverFolder(t, tp, "Drafts"), e.storeFolder(t, a.Id, "Drafts")) == nil && len(serverFolder(t, tp, "Drafts")) == 1
	})
	for _, m := range e.storeFolder(t, a.Id, "Drafts") {
		if m.id != app.Message.Id {
			t.Errorf("appended message has id %s, want %s", m.id, app.Message.Id)
		}
	}
	if _, err := e.mailboxes.DeleteMailbox(ctx, &mailbusv1.DeleteMailboxRequest{MailboxId: mb.Mailbox.Id, DeviceId: "A"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "deleted upstream", func() bool { return !slices.Contains(listNames(t, tp), "Clients") })
	// The store keeps agreeing (no folder comes back, none is lost).
	waitFor(t, "store folders", func() bool {
		n := e.mailboxNames(t, a.Id)
		return slices.Equal(n, []string{"Drafts", "INBOX"})
	})
}

// TestMemFolderEmptied: every message of a folder expunged upstream.
func TestMemFolderEmptied(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	for i := range 3 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	startSync(t, e, nil)
	waitFor(t, "initial sync", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 3 })
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.SeqSet{{Start: 1, Stop: 0}}, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "empty in the store", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 0 })
}

// TestServiceHealth: the service serves gRPC health once running, and New
// refuses a configuration without a store.
func TestServiceHealth(t *testing.T) {
	if _, err := imapsync.New(imapsync.Config{}); err == nil {
		t.Fatal("New without a store accepted")
	}
	e := startStore(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan string, 1)
	s, err := imapsync.New(imapsync.Config{StoreConn: e.conn, Listener: lis, MetricsListen: "-", Logger: testLogger(t), Ready: func(a string) { ready <- a }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	addr := <-ready
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	waitFor(t, "SERVING", func() bool {
		resp, err := healthpb.NewHealthClient(conn).Check(ctxT(t), &healthpb.HealthCheckRequest{})
		return err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING
	})
}
