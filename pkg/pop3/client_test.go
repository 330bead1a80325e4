package pop3_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

func TestGreetingAndCapabilities(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass), pop3test.WithAPOP(),
		pop3test.WithSASL("PLAIN"), pop3test.WithLoginDelay(900))
	c := dial(t, srv, nil)
	if ts := c.Greeting().Timestamp; !strings.HasPrefix(ts, "<") || !strings.HasSuffix(ts, "@pop3test>") {
		t.Errorf("APOP timestamp %q from greeting %q", ts, c.Greeting().Text)
	}
	caps, err := c.Capabilities(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES"} {
		if !caps.Has(tag) {
			t.Errorf("CAPA lacks %s: %v", tag, caps)
		}
	}
	if !caps.HasSASL("PLAIN") {
		t.Errorf("SASL %v", caps.SASL())
	}
	if d, perUser, ok := caps.LoginDelay(); !ok || d != 900*time.Second || perUser {
		t.Errorf("LoginDelay = %v %v %v", d, perUser, ok)
	}
	// Cached until the state changes.
	if _, err := c.Capabilities(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := srv.CommandCount("CAPA"); n != 1 {
		t.Errorf("CAPA sent %d times, want 1", n)
	}
}

func TestServerWithoutCAPA(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(3, simpleMessage)...), pop3test.WithoutCAPA())
	c := dial(t, srv, nil)
	caps, err := c.Capabilities(context.Background())
	if err != nil || len(caps) != 0 {
		t.Fatalf("Capabilities = %v, %v; want empty, nil", caps, err)
	}
	if err := c.Login(context.Background(), pop3.Credentials{Username: user, Password: pass}, pop3.MechanismAuto); err != nil {
		t.Fatal(err)
	}
	var got []int
	err = c.RetrPipelined(context.Background(), []int{1, 2, 3}, func(n int, _ io.Reader) error {
		got = append(got, n)
		return nil
	})
	if err != nil || !slices.Equal(got, []int{1, 2, 3}) {
		t.Fatalf("RetrPipelined: %v %v", got, err)
	}
	if p := srv.PipelinedCommands(); p != 0 {
		t.Errorf("%d commands pipelined to a server without PIPELINING", p)
	}
}

func TestStatListUidl(t *testing.T) {
	msgs := messages(3, simpleMessage)
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, msgs...))
	c := login(t, srv, nil)
	ctx := context.Background()
	count, size, err := c.Stat(ctx)
	want := int64(0)
	for _, m := range msgs {
		want += int64(len(m.Data))
	}
	if err != nil || count != 3 || size != want {
		t.Fatalf("Stat = %d %d %v, want 3 %d", count, size, err, want)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 3 || list[1] != (pop3.ListEntry{Number: 2, Size: int64(len(msgs[1].Data))}) {
		t.Fatalf("List = %v %v", list, err)
	}
	one, err := c.ListOne(ctx, 3)
	if err != nil || one.Number != 3 {
		t.Fatalf("ListOne = %v %v", one, err)
	}
	uidl, err := c.Uidl(ctx)
	if err != nil || len(uidl) != 3 || uidl[2] != (pop3.UIDLEntry{Number: 3, UID: "u00003"}) {
		t.Fatalf("Uidl = %v %v", uidl, err)
	}
	u, err := c.UidlOne(ctx, 2)
	if err != nil || u.UID != "u00002" {
		t.Fatalf("UidlOne = %v %v", u, err)
	}
	_, err = c.ListOne(ctx, 9)
	var pe *pop3.Error
	if !errors.As(err, &pe) || pe.Command != "LIST 9" || pop3.Temporary(err) {
		t.Fatalf("ListOne(9) = %v", err)
	}
	if err := c.Noop(ctx); err != nil {
		t.Fatalf("Noop after -ERR: %v", err)
	}
	if _, err := c.Retr(ctx, 0); err == nil {
		t.Fatal("Retr(0) succeeded")
	}
}

func TestUIDLUnsupported(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(2, simpleMessage)...), pop3test.WithoutUIDL())
	c := login(t, srv, nil)
	_, err := c.Uidl(context.Background())
	if !errors.Is(err, pop3.ErrUIDLUnsupported) || pop3.Temporary(err) {
		t.Fatalf("Uidl = %v, want ErrUIDLUnsupported (permanent)", err)
	}
	var pe *pop3.Error
	if !errors.As(err, &pe) {
		t.Errorf("%v is not an *Error", err)
	}
	// The session goes on.
	if n, _, err := c.Stat(context.Background()); err != nil || n != 2 {
		t.Fatalf("Stat = %d %v", n, err)
	}
}

func TestUIDLTemporaryErrorIsNotUnsupported(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(1, simpleMessage)...),
		pop3test.WithFault(pop3test.Reply("UIDL", "-ERR [SYS/TEMP] index busy")))
	c := login(t, srv, nil)
	_, err := c.Uidl(context.Background())
	if errors.Is(err, pop3.ErrUIDLUnsupported) || !pop3.Temporary(err) {
		t.Fatalf("Uidl = %v, want a temporary error", err)
	}
}

func TestDeleCommitsOnlyOnQuit(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(4, simpleMessage)...))
	ctx := context.Background()

	// Marked, then the connection drops: nothing is deleted.
	c := login(t, srv, nil)
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !srv.WaitIdle(time.Second) {
		t.Fatal("session did not end")
	}
	if n := len(srv.Messages(user)); n != 4 {
		t.Fatalf("%d messages after a dropped session, want 4", n)
	}

	// RSET unmarks.
	c = login(t, srv, nil)
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Rset(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleMany(ctx, []int{2, 3}); err != nil {
		t.Fatal(err)
	}
	if n, _, _ := c.Stat(ctx); n != 2 {
		t.Errorf("Stat after DELE: %d messages, want 2", n)
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	var uids []string
	for _, m := range srv.Messages(user) {
		uids = append(uids, m.UID)
	}
	if !slices.Equal(uids, []string{"u00001", "u00004"}) {
		t.Fatalf("left on server: %v", uids)
	}
	if err := c.Noop(ctx); !errors.Is(err, pop3.ErrClosed) {
		t.Fatalf("Noop after Quit = %v, want ErrClosed", err)
	}
}

func TestDeleManyReportsEveryFailure(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(3, simpleMessage)...))
	c := login(t, srv, nil)
	err := c.DeleMany(context.Background(), []int{1, 7, 2, 9, 3})
	var pe *pop3.Error
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "DELE 7") || !strings.Contains(err.Error(), "DELE 9") {
		t.Fatalf("DeleMany = %v", err)
	}
	if n, _, _ := c.Stat(context.Background()); n != 0 {
		t.Fatalf("Stat = %d, want 0 (1, 2, 3 marked)", n)
	}
}

func TestMaildropInUse(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(1, simpleMessage)...))
	ctx := context.Background()
	first := login(t, srv, nil)
	second := dial(t, srv, nil)
	err := second.Login(ctx, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser)
	var pe *pop3.Error
	if !errors.As(err, &pe) || pe.Code != "IN-USE" || pe.Command != "PASS" {
		t.Fatalf("second Login = %v, want [IN-USE] on PASS", err)
	}
	if !pop3.Temporary(err) || errors.Is(err, pop3.ErrAuthFailed) {
		t.Fatalf("[IN-USE] must be temporary and not an auth failure: %v", err)
	}
	if got := srv.MaxConcurrentSessions(); got != 2 {
		t.Errorf("MaxConcurrentSessions = %d", got)
	}
	if err := first.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	// The same session may try again once the lock is gone.
	if err := second.Login(ctx, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser); err != nil {
		t.Fatalf("Login after the first session quit: %v", err)
	}
}

func TestCommandInjectionRefused(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass))
	c := dial(t, srv, nil)
	err := c.Login(context.Background(), pop3.Credentials{Username: "alice\r\nDELE 1", Password: pass}, pop3.MechanismUser)
	if err == nil || !strings.Contains(err.Error(), "CR, LF") {
		t.Fatalf("Login = %v", err)
	}
	for _, cmd := range srv.Commands() {
		if strings.HasPrefix(cmd, "DELE") || strings.HasPrefix(cmd, "USER") {
			t.Fatalf("sent %q", cmd)
		}
	}
}
