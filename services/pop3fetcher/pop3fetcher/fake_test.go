package pop3fetcher_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

const (
	keep = mailbusv1.Pop3Mode_POP3_MODE_KEEP
	dele = mailbusv1.Pop3Mode_POP3_MODE_DELETE
)

// fakeWire is what pop3test sends for a stored message: the octets as
// stored, plus CRLF when they do not end in one (RFC 1939 needs the final
// CRLF before the terminating "."; see pkg/pop3's documentation).
func fakeWire(data []byte) []byte {
	if bytes.HasSuffix(data, []byte("\r\n")) {
		return data
	}
	return append(append([]byte(nil), data...), '\r', '\n')
}

func wires(msgs []pop3test.Message) [][]byte {
	var out [][]byte
	for _, m := range msgs {
		out = append(out, fakeWire(m.Data))
	}
	return out
}

func someMessages(from, n int) []pop3test.Message {
	var out []pop3test.Message
	for i := from; i < from+n; i++ {
		out = append(out, pop3test.Message{Data: message(i)})
	}
	return out
}

// fakeAccount creates an account for user on the fake server (plaintext).
func (e *env) fakeAccount(t testing.TB, srv *pop3test.Server, user, secret string, mode mailbusv1.Pop3Mode) *mailbusv1.Account {
	t.Helper()
	host, port := hostPort(t, srv.Addr())
	return e.createAccount(t, account{host: host, port: port, user: user, secret: secret, mode: mode})
}

func hostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// poll runs one pass and fails the test if it fails.
func poll(t testing.TB, f *pop3fetcher.Fetcher, a *mailbusv1.Account) *pop3fetcher.PassResult {
	t.Helper()
	res, err := f.Poll(callCtx(t), a)
	if err != nil {
		t.Fatalf("pass failed: %v", err)
	}
	return res
}

// idle waits for the fake server's sessions to end (the maildrop lock is
// released when the server has seen the connection close).
func idle(t testing.TB, srv *pop3test.Server) {
	t.Helper()
	if !srv.WaitIdle(waitLong) {
		t.Fatal("fake server sessions did not end")
	}
}

func TestKeepMode(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 3)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw-keep-1", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "pw-keep-1", keep)
	f, reg := e.newFetcher(t)

	res := poll(t, f, acct)
	if res.Messages != 3 || res.New != 3 || res.Fetched != 3 || res.Deleted != 0 || res.Identity != pop3fetcher.IdentityUIDL {
		t.Errorf("first pass: %+v", res)
	}
	idle(t, srv)
	if n := len(srv.Messages("bob")); n != 3 {
		t.Errorf("keep mode: the server holds %d messages, want 3", n)
	}
	e.checkStoredExactly(t, acct.Id, wires(msgs))
	st := e.getAccount(t, acct.Id).GetStatus()
	if st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || st.GetLastSuccessTime() == nil || st.GetReason() != "" {
		t.Errorf("status after the pass: %v", st)
	}

	retrs := srv.CommandCount("RETR")
	res = poll(t, f, acct)
	if res.New != 0 || res.Fetched != 0 || res.Known != 3 {
		t.Errorf("second pass: %+v", res)
	}
	if n := srv.CommandCount("RETR"); n != retrs {
		t.Errorf("second pass sent %d RETR", n-retrs)
	}

	more := someMessages(4, 1)
	srv.Deliver("bob", more...)
	res = poll(t, f, acct)
	if res.New != 1 || res.Fetched != 1 {
		t.Errorf("pass after a delivery: %+v", res)
	}
	res = poll(t, f, acct)
	if res.New != 0 {
		t.Errorf("pass after that: %+v", res)
	}
	idle(t, srv)
	all := append(msgs, more...)
	stored := e.checkStoredExactly(t, acct.Id, wires(all))
	e.checkOneEventEach(t, acct.Id, stored)
	if n := srv.CommandCount("DELE"); n != 0 {
		t.Errorf("keep mode sent %d DELE", n)
	}
	if len(srv.Messages("bob")) != 4 {
		t.Errorf("keep mode: the server holds %d messages, want 4", len(srv.Messages("bob")))
	}
	if got := metric(t, reg, "mailbus_pop3_messages_fetched_total"); got != 4 {
		t.Errorf("mailbus_pop3_messages_fetched_total = %v, want 4", got)
	}
	var bytesWant int
	for _, m := range all {
		bytesWant += len(fakeWire(m.Data))
	}
	if got := metric(t, reg, "mailbus_pop3_bytes_fetched_total"); got != float64(bytesWant) {
		t.Errorf("mailbus_pop3_bytes_fetched_total = %v, want %d", got, bytesWant)
	}
	if got := metric(t, reg, "mailbus_pop3_poll_duration_seconds", "result", "ok"); got != 4 {
		t.Errorf("poll duration samples = %v, want 4", got)
	}
	e.checkNoSecretLogged(t, "pw-keep-1")
}

func TestDeleteMode(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 5)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	f, _ := e.newFetcher(t)

	res := poll(t, f, acct)
	if res.New != 5 || res.Fetched != 5 || res.Deleted != 5 {
		t.Errorf("first pass: %+v", res)
	}
	idle(t, srv)
	if n := len(srv.Messages("bob")); n != 0 {
		t.Errorf("delete mode: the server still holds %d messages", n)
	}
	res = poll(t, f, acct)
	if res.Messages != 0 || res.New != 0 {
		t.Errorf("second pass: %+v", res)
	}
	more := someMessages(6, 2)
	srv.Deliver("bob", more...)
	res = poll(t, f, acct)
	if res.New != 2 || res.Fetched != 2 || res.Deleted != 2 {
		t.Errorf("pass after a delivery: %+v", res)
	}
	idle(t, srv)
	if n := len(srv.Messages("bob")); n != 0 {
		t.Errorf("delete mode: the server still holds %d messages", n)
	}
	stored := e.checkStoredExactly(t, acct.Id, wires(append(msgs, more...)))
	e.checkOneEventEach(t, acct.Id, stored)
}

// TestFailures makes the server fail at each step of a pass: the pass
// fails with the right kind of error, the account is reported RETRYING,
// and the next pass (without the fault) leaves the store holding each
// message exactly once (and, in delete mode, the server empty).
func TestFailures(t *testing.T) {
	// release ends the pause of "silence mid-RETR" (the fake server holds
	// a paused session until then, even after the client has gone).
	release := make(chan struct{})
	cases := []struct {
		name  string
		mode  mailbusv1.Pop3Mode
		fault pop3test.Fault
		kind  string
		short bool // a short per-operation timeout
	}{
		{name: "connection dropped mid-RETR", mode: dele, fault: pop3test.Drop("RETR 2", 40).Once(), kind: pop3fetcher.KindNetwork},
		{name: "connection dropped mid-RETR keep", mode: keep, fault: pop3test.Drop("RETR 3", 10).Once(), kind: pop3fetcher.KindNetwork},
		{name: "maildrop in use", mode: dele, fault: pop3test.Reply("PASS", "-ERR [IN-USE] maildrop is locked by another session").Once(), kind: pop3fetcher.KindInUse},
		{name: "login delay", mode: keep, fault: pop3test.Reply("PASS", "-ERR [LOGIN-DELAY] wait a little").Once(), kind: pop3fetcher.KindLoginDelay},
		{name: "greeting then silence", mode: keep, fault: pop3test.Stall("CAPA").Once(), kind: pop3fetcher.KindTimeout, short: true},
		{name: "silence mid-RETR", mode: dele, fault: pop3test.Pause("RETR 2", 30, release).Once(), kind: pop3fetcher.KindTimeout, short: true},
		{name: "bare OK to STAT", mode: keep, fault: pop3test.Reply("STAT", "+OK").Once(), kind: pop3fetcher.KindProtocol},
		{name: "bare OK to UIDL", mode: dele, fault: pop3test.Reply("UIDL", "+OK").Once(), kind: pop3fetcher.KindTimeout, short: true},
		{name: "garbage to UIDL", mode: dele, fault: pop3test.ReplyBytes("UIDL", []byte("\x00\xff garbage\r\n")).Once(), kind: pop3fetcher.KindProtocol},
		{name: "garbage greeting", mode: keep, fault: pop3test.ReplyBytes("GREETING", []byte("HTTP/1.1 400 Bad Request\r\n")).Once(), kind: pop3fetcher.KindProtocol},
		{name: "endless line to LIST", mode: keep, fault: pop3test.EndlessLine("LIST").Once(), kind: pop3fetcher.KindProtocol},
		{name: "one octet at a time to LIST", mode: keep, fault: pop3test.Drip("LIST", 100*time.Millisecond).Once(), kind: pop3fetcher.KindTimeout, short: true},
		{name: "SYS/TEMP to RETR", mode: dele, fault: pop3test.Reply("RETR 2", "-ERR [SYS/TEMP] disk hiccup").Once(), kind: pop3fetcher.KindServer},
		{name: "plain -ERR to STAT", mode: keep, fault: pop3test.Reply("STAT", "-ERR maildrop being rewritten").Once(), kind: pop3fetcher.KindServer},
		{name: "plain -ERR to LIST", mode: dele, fault: pop3test.Reply("LIST", "-ERR try again").Once(), kind: pop3fetcher.KindServer},
		{name: "plain -ERR to DELE", mode: dele, fault: pop3test.Reply("DELE", "-ERR cannot delete now").Once(), kind: pop3fetcher.KindServer},
		{name: "connection dropped at DELE", mode: dele, fault: pop3test.Drop("DELE", 0).Once(), kind: pop3fetcher.KindNetwork},
		{name: "silence at QUIT", mode: dele, fault: pop3test.Stall("QUIT").Once(), kind: pop3fetcher.KindQuit, short: true},
		{name: "QUIT refused", mode: dele, fault: pop3test.Reply("QUIT", "-ERR [SYS/TEMP] could not remove messages").Once(), kind: pop3fetcher.KindQuit},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStore(t)
			msgs := someMessages(1, 4)
			srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...), pop3test.WithFault(tc.fault))
			acct := e.fakeAccount(t, srv, "bob", "pw", tc.mode)
			f, reg := e.newFetcher(t, func(c *pop3fetcher.Config) {
				if tc.short {
					c.Timeout = 300 * time.Millisecond
				}
			})
			_, err := f.Poll(callCtx(t), acct)
			var pe *pop3fetcher.PassError
			if !errors.As(err, &pe) {
				t.Fatalf("pass with the fault: got %v, want a *PassError", err)
			}
			if pe.Kind != tc.kind || pe.Permanent {
				t.Errorf("pass with the fault: kind %q permanent %v (%v), want %q and temporary", pe.Kind, pe.Permanent, pe, tc.kind)
			}
			if tc.kind != pop3fetcher.KindQuit && strings.HasPrefix(pe.Reason, "QUIT") {
				t.Errorf("reason %q names the QUIT after the failure, not the step that failed", pe.Reason)
			}
			st := e.getAccount(t, acct.Id).GetStatus()
			if st.GetState() != mailbusv1.SyncState_SYNC_STATE_RETRYING || !strings.Contains(st.GetReason(), "retrying") {
				t.Errorf("status after the failure: %v", st)
			}
			if got := metric(t, reg, "mailbus_pop3_errors_total", "kind", tc.kind); got != 1 {
				t.Errorf("errors_total{kind=%q} = %v, want 1", tc.kind, got)
			}
			srv.ClearFaults()
			if tc.fault.Action == pop3test.ActionPause {
				close(release)
			}
			idle(t, srv)
			res := poll(t, f, acct)
			idle(t, srv)
			if st := e.getAccount(t, acct.Id).GetStatus(); st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE {
				t.Errorf("status after the recovery: %v", st)
			}
			stored := e.checkStoredExactly(t, acct.Id, wires(msgs))
			e.checkOneEventEach(t, acct.Id, stored)
			if tc.mode == dele {
				if n := len(srv.Messages("bob")); n != 0 {
					t.Errorf("the server still holds %d messages after the recovery (%+v)", n, res)
				}
			} else if n := len(srv.Messages("bob")); n != 4 {
				t.Errorf("keep mode: the server holds %d messages", n)
			}
		})
	}
}

// TestBadPasswordParks runs the whole service: a refused password parks
// the account with a reason, no further login is tried, and an update of
// the account (a new secret) makes it work.
func TestBadPasswordParks(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 2)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "right-pw-7", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "wrong-pw-3", dele)
	f, reg := e.newFetcher(t)
	runFetcher(t, f)

	st := e.waitStatus(t, acct.Id, mailbusv1.SyncState_SYNC_STATE_PARKED)
	if !strings.Contains(st.GetReason(), "PASS") || !strings.Contains(st.GetReason(), "parked") {
		t.Errorf("parked reason %q does not say what failed", st.GetReason())
	}
	waitFor(t, "the worker to be parked", func() bool { return metric(t, reg, "mailbus_pop3_accounts", "state", "parked") == 1 })
	if got := metric(t, reg, "mailbus_pop3_errors_total", "kind", pop3fetcher.KindAuth); got != 1 {
		t.Errorf("errors_total{kind=auth} = %v, want 1", got)
	}
	logins := srv.CommandCount("PASS")
	if logins != 1 {
		t.Errorf("%d logins before parking, want 1", logins)
	}
	// The poll interval is 1 s and retries come after 20-100 ms: a worker
	// that did not park would have logged in again by now.
	time.Sleep(1500 * time.Millisecond)
	if n := srv.CommandCount("PASS"); n != logins {
		t.Errorf("%d logins while parked", n-logins)
	}

	e.updateSecret(t, acct.Id, "right-pw-7")
	waitFor(t, "the messages to be stored and deleted", func() bool {
		return len(e.stored(t, acct.Id)) == 2 && len(srv.Messages("bob")) == 0
	})
	e.waitStatus(t, acct.Id, mailbusv1.SyncState_SYNC_STATE_IDLE)
	e.checkStoredExactly(t, acct.Id, wires(msgs))
	e.checkNoSecretLogged(t, "right-pw-7", "wrong-pw-3")
}

// TestAccountsFollowed: accounts added while the service runs are polled,
// and a removed account's worker stops.
func TestAccountsFollowed(t *testing.T) {
	e := startStore(t)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("a", "pa", someMessages(1, 2)...), pop3test.WithMailbox("b", "pb", someMessages(10, 3)...))
	ready := make(chan string, 1)
	f, reg := e.newFetcher(t, func(c *pop3fetcher.Config) { c.Ready = func(addr string) { ready <- addr } })
	runFetcher(t, f)
	checkHealth(t, <-ready)
	a := e.fakeAccount(t, srv, "a", "pa", keep)
	host, port := hostPort(t, srv.Addr())
	b := e.createAccount(t, account{name: "b", host: host, port: port, user: "b", secret: "pb", mode: dele})
	waitFor(t, "both accounts fetched", func() bool {
		return len(e.stored(t, a.Id)) == 2 && len(e.stored(t, b.Id)) == 3 && len(srv.Messages("b")) == 0
	})
	waitFor(t, "two active workers", func() bool { return metric(t, reg, "mailbus_pop3_accounts", "state", "active") == 2 })
	if _, err := e.accounts.DeleteAccount(callCtx(t), &mailbusv1.DeleteAccountRequest{AccountId: a.Id}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one worker", func() bool { return metric(t, reg, "mailbus_pop3_accounts") == 1 })
}

func TestTooLarge(t *testing.T) {
	e := startStore(t)
	big := pop3test.Message{UID: "big", Data: append(message(2), bytes.Repeat([]byte("x"), 3000)...)}
	// LIST says 1000 octets, but the server adds a CRLF: 1002 on the wire,
	// which is found to be too large only while reading it.
	liar := pop3test.Message{UID: "liar", Data: bytes.Repeat([]byte("y"), 1000)}
	msgs := []pop3test.Message{{UID: "s1", Data: message(1)}, big, {UID: "s3", Data: message(3)}, liar, {UID: "s5", Data: message(5)}}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	f, reg := e.newFetcher(t, func(c *pop3fetcher.Config) { c.MaxMessageSize = 1000 })

	res := poll(t, f, acct)
	if res.Fetched != 3 || len(res.Skipped) != 2 {
		t.Errorf("pass: %+v", res)
	}
	st := e.getAccount(t, acct.Id).GetStatus()
	if st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || !strings.Contains(st.GetReason(), "uidl big") ||
		!strings.Contains(st.GetReason(), "uidl liar") || !strings.Contains(st.GetReason(), "limit") {
		t.Errorf("status: %v", st)
	}
	idle(t, srv)
	if got := srv.Messages("bob"); len(got) != 2 || got[0].UID != "big" || got[1].UID != "liar" {
		t.Errorf("the server holds %v, want the two large messages", got)
	}
	retrs := srv.CommandCount("RETR")
	res = poll(t, f, acct)
	if res.Fetched != 0 || len(res.Skipped) != 2 {
		t.Errorf("second pass: %+v", res)
	}
	if n := srv.CommandCount("RETR") - retrs; n != 0 {
		t.Errorf("the second pass sent %d RETR: a too-large message was retrieved again", n)
	}
	if got := metric(t, reg, "mailbus_pop3_errors_total", "kind", pop3fetcher.KindTooLarge); got != 2 {
		t.Errorf("errors_total{kind=too_large} = %v, want 2 (once each)", got)
	}
	e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{msgs[0], msgs[2], msgs[4]}))
}

// checkHealth checks that the fetcher's gRPC health service says SERVING.
func checkHealth(t testing.TB, addr string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(callCtx(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health: %v %v", resp, err)
	}
}

// TestRetrRefused: a message the server refuses to send (a plain -ERR to
// its RETR) neither parks the account nor blocks the messages behind it:
// the pass fails as temporary, and the next one skips it and names it.
func TestRetrRefused(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 3)
	msgs[1].UID = "corrupt"
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...), pop3test.WithFault(pop3test.Reply("RETR 2", "-ERR message is corrupted")))
	acct := e.fakeAccount(t, srv, "bob", "pw", keep) // keep: message numbers stay put
	f, _ := e.newFetcher(t)
	_, err := f.Poll(callCtx(t), acct)
	var pe *pop3fetcher.PassError
	if !errors.As(err, &pe) || pe.Permanent || pe.Kind != pop3fetcher.KindServer {
		t.Fatalf("pass: %v, want a temporary server error", err)
	}
	idle(t, srv)
	res := poll(t, f, acct)
	if len(res.Skipped) != 1 || res.Skipped[0].UIDL != "corrupt" {
		t.Errorf("second pass: %+v", res)
	}
	st := e.getAccount(t, acct.Id).GetStatus()
	if st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || !strings.Contains(st.GetReason(), "uidl corrupt") {
		t.Errorf("status: %v", st)
	}
	idle(t, srv)
	e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{msgs[0], msgs[2]}))
	if n := len(srv.Messages("bob")); n != 3 {
		t.Errorf("the server holds %d messages, want 3", n)
	}
}

func countCommand(srv *pop3test.Server, cmd string) int {
	n := 0
	for _, c := range srv.Commands() {
		if strings.EqualFold(c, cmd) {
			n++
		}
	}
	return n
}

// TestWithoutUIDL: a server without UIDL; the fallback ids make no
// duplicates across passes, and two copies of one message stay two.
func TestWithoutUIDL(t *testing.T) {
	cases := []struct {
		name     string
		mode     mailbusv1.Pop3Mode
		noTOP    bool
		identity string
	}{
		{"keep", keep, false, pop3fetcher.IdentityHeaders},
		{"keep without TOP", keep, true, pop3fetcher.IdentityContent},
		{"delete", dele, false, pop3fetcher.IdentityContent},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStore(t)
			msgs := append(someMessages(1, 3), pop3test.Message{Data: message(2)}) // a copy of message 2
			opts := []pop3test.Option{pop3test.WithMailbox("bob", "pw", msgs...), pop3test.WithoutUIDL()}
			if tc.noTOP {
				opts = append(opts, pop3test.WithFault(pop3test.Reply("TOP", "-ERR unknown command")))
			}
			srv := pop3test.NewServer(t, opts...)
			acct := e.fakeAccount(t, srv, "bob", "pw", tc.mode)
			f, _ := e.newFetcher(t)
			res := poll(t, f, acct)
			if res.Identity != tc.identity || res.Fetched != 4 {
				t.Errorf("first pass: %+v", res)
			}
			res = poll(t, f, acct)
			if res.Fetched != 0 || res.New != 0 {
				t.Errorf("second pass: %+v", res)
			}
			more := someMessages(7, 1)
			srv.Deliver("bob", more...)
			res = poll(t, f, acct)
			if res.Fetched != 1 {
				t.Errorf("pass after a delivery: %+v", res)
			}
			res = poll(t, f, acct)
			if res.Fetched != 0 {
				t.Errorf("pass after that: %+v", res)
			}
			idle(t, srv)
			stored := e.checkStoredExactly(t, acct.Id, wires(append(msgs, more...)))
			e.checkOneEventEach(t, acct.Id, stored)
			want := 5
			if tc.mode == dele {
				want = 0
			}
			if n := len(srv.Messages("bob")); n != want {
				t.Errorf("the server holds %d messages, want %d", n, want)
			}
		})
	}
}

// TestGracefulCancel cancels a pass in the middle of a message: the pass
// returns promptly, the messages sent in full are stored, the partial one
// is not, nothing is deleted that is not stored, and the next pass
// finishes the job.
func TestGracefulCancel(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 4)
	release := make(chan struct{})
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...), pop3test.WithFault(pop3test.Pause("RETR 3", 60, release).Once()))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	f, _ := e.newFetcher(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := f.Poll(ctx, acct)
		done <- err
	}()
	// RETRs are pipelined: the server sees RETR 3 before the fetcher has
	// read the first two answers. Cancel once the fetcher has read the
	// status line of the third answer, so the first two are in full on
	// their way to the store.
	waitFor(t, "the fetcher to read the start of the answer to RETR 3", func() bool {
		return strings.Contains(e.logs.String(), `msg="pop3 recv" service=pop3fetcher account=`+acct.Id+` name=test cmd="RETR 3"`)
	})
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled pass: %v", err)
		}
	case <-time.After(waitLong):
		t.Fatal("cancelled pass did not return")
	}
	// The complete messages were committed on the way out; the partial
	// third was dropped by the store.
	e.checkStoredExactly(t, acct.Id, wires(msgs[:2]))
	close(release) // the fake server holds the paused session until then
	idle(t, srv)
	if n := len(srv.Messages("bob")); n != 4 {
		t.Errorf("the server holds %d messages, want 4 (the connection was cut: no QUIT)", n)
	}
	f2, _ := e.newFetcher(t)
	res := poll(t, f2, acct)
	if res.Fetched != 2 || res.Deleted != 4 {
		t.Errorf("pass after the restart: %+v", res)
	}
	idle(t, srv)
	stored := e.checkStoredExactly(t, acct.Id, wires(msgs))
	e.checkOneEventEach(t, acct.Id, stored)
	if n := len(srv.Messages("bob")); n != 0 {
		t.Errorf("the server still holds %d messages", n)
	}
}
