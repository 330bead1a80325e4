package pop3_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// TestFaults drives each fault of the fake server through the client and
// checks the error's kind, its retry class, and that nothing hangs.
func TestFaults(t *testing.T) {
	const timeout = 300 * time.Millisecond
	type step func(ctx context.Context, c *pop3.Client) error
	retr := func(n int) step {
		return func(ctx context.Context, c *pop3.Client) error {
			r, err := c.Retr(ctx, n)
			if err != nil {
				return err
			}
			defer r.Close()
			_, err = io.Copy(io.Discard, r)
			return err
		}
	}
	stat := func(ctx context.Context, c *pop3.Client) error { _, _, err := c.Stat(ctx); return err }
	creds := pop3.Credentials{Username: user, Password: pass}

	tests := []struct {
		name      string
		fault     pop3test.Fault
		atDial    bool // the fault hits Dial; else Login then step
		step      step
		temporary bool
		is        error // errors.Is target, if any
		code      string
		timeout   bool // a net.Error timeout
		usable    bool // the session still works afterwards
	}{
		{name: "drop mid RETR", fault: pop3test.Drop("RETR 2", 100), step: retr(2), temporary: true, is: io.ErrUnexpectedEOF},
		{name: "drop before RETR answer", fault: pop3test.Drop("RETR 2", 0), step: retr(2), temporary: true, is: io.ErrUnexpectedEOF},
		{name: "drop mid status line", fault: pop3test.Drop("STAT", 2), step: stat, temporary: true, is: io.ErrUnexpectedEOF},
		{name: "bare +OK to STAT", fault: pop3test.Reply("STAT", "+OK"), step: stat, temporary: true, is: pop3.ErrProtocol, usable: true},
		{name: "STAT without size", fault: pop3test.Reply("STAT", "+OK 3"), step: stat, temporary: true, is: pop3.ErrProtocol, usable: true},
		{name: "garbage to STAT", fault: pop3test.ReplyBytes("STAT", []byte("\x00\xff\xfegarbage\r\n")), step: stat, temporary: true, is: pop3.ErrProtocol},
		{name: "garbage in LIST", fault: pop3test.ReplyBytes("LIST", []byte("+OK\r\n1 x\r\n.\r\n")), step: func(ctx context.Context, c *pop3.Client) error { _, err := c.List(ctx); return err }, temporary: true, is: pop3.ErrProtocol, usable: true},
		{name: "stall on RETR", fault: pop3test.Stall("RETR"), step: retr(1), temporary: true, timeout: true},
		{name: "stall mid RETR", fault: pop3test.Pause("RETR 1", 50, nil), step: retr(1), temporary: true, timeout: true},
		{name: "greeting and nothing more", fault: pop3test.Stall("*"), temporary: true, timeout: true},
		{name: "endless line to STAT", fault: pop3test.EndlessLine("STAT"), step: stat, temporary: true, is: pop3.ErrLineTooLong},
		{name: "endless line in LIST", fault: pop3test.ReplyBytes("LIST", append([]byte("+OK\r\n"), make([]byte, 200<<10)...)), step: func(ctx context.Context, c *pop3.Client) error { _, err := c.List(ctx); return err }, temporary: true, is: pop3.ErrLineTooLong},
		{name: "IN-USE on RETR", fault: pop3test.Reply("RETR", "-ERR [IN-USE] busy"), step: retr(1), temporary: true, code: "IN-USE", usable: true},
		{name: "SYS/TEMP on RETR", fault: pop3test.Reply("RETR", "-ERR [SYS/TEMP] disk"), step: retr(1), temporary: true, code: "SYS/TEMP", usable: true},
		{name: "SYS/PERM on RETR", fault: pop3test.Reply("RETR", "-ERR [SYS/PERM] gone"), step: retr(1), temporary: false, code: "SYS/PERM", usable: true},
		{name: "plain -ERR on RETR", fault: pop3test.Reply("RETR", "-ERR no such message"), step: retr(1), temporary: false, code: "", usable: true},
		{name: "QUIT -ERR", fault: pop3test.Reply("QUIT", "-ERR [SYS/TEMP] could not delete"), step: func(ctx context.Context, c *pop3.Client) error { return c.Quit(ctx) }, temporary: true, code: "SYS/TEMP"},
		{name: "drop instead of QUIT answer", fault: pop3test.Drop("QUIT", 0), step: func(ctx context.Context, c *pop3.Client) error { return c.Quit(ctx) }, temporary: true, is: io.ErrUnexpectedEOF},
		{name: "no greeting", fault: pop3test.Drop("GREETING", 0), atDial: true, temporary: true, is: io.ErrUnexpectedEOF},
		{name: "silent greeting", fault: pop3test.Stall("GREETING"), atDial: true, temporary: true, timeout: true},
		{name: "-ERR greeting", fault: pop3test.Reply("GREETING", "-ERR too many connections"), atDial: true, temporary: true, code: ""},
		{name: "garbage greeting", fault: pop3test.ReplyBytes("GREETING", []byte("SSH-2.0-OpenSSH\r\n")), atDial: true, temporary: true, is: pop3.ErrProtocol},
		{name: "endless greeting", fault: pop3test.EndlessLine("GREETING"), atDial: true, temporary: true, is: pop3.ErrLineTooLong},
		{name: "IN-USE on PASS", fault: pop3test.Reply("PASS", "-ERR [IN-USE] locked").Once(), atDial: false, temporary: true, code: "IN-USE", usable: true},
		{name: "AUTH on PASS", fault: pop3test.Reply("PASS", "-ERR [AUTH] bad").Once(), atDial: false, temporary: false, code: "AUTH", is: pop3.ErrAuthFailed, usable: true},
		{name: "slow but in time", fault: pop3test.Delay("STAT", timeout/3), step: stat, usable: true},
		{name: "one octet at a time to STAT", fault: pop3test.Drip("STAT", timeout/4), step: stat, temporary: true, timeout: true},
		{name: "one octet at a time greeting", fault: pop3test.Drip("GREETING", timeout/4), atDial: true, temporary: true, timeout: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(3, func(i int) string { return mixed(i + 20) })...))
			srv.InjectFault(tt.fault)
			opts := plain()
			opts.Timeout = timeout
			ctx := context.Background()
			start := time.Now()
			var err error
			var c *pop3.Client
			loggedIn := false
			switch {
			case tt.atDial:
				c, err = pop3.Dial(ctx, srv.Addr(), opts)
				if err == nil {
					c.Close()
					t.Fatal("Dial succeeded")
				}
			default:
				c, err = pop3.Dial(ctx, srv.Addr(), opts)
				if err != nil {
					t.Fatalf("Dial: %v", err)
				}
				defer c.Close()
				err = c.Login(ctx, creds, pop3.MechanismUser)
				loggedIn = err == nil
				if tt.step != nil {
					if err != nil {
						t.Fatalf("Login: %v", err)
					}
					err = tt.step(ctx, c)
				}
			}
			elapsed := time.Since(start)
			if elapsed > 3*timeout+500*time.Millisecond {
				t.Errorf("took %v", elapsed)
			}
			if tt.name == "slow but in time" {
				if err != nil {
					t.Fatalf("slow answer failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			t.Logf("error: %v", err)
			if got := pop3.Temporary(err); got != tt.temporary {
				t.Errorf("Temporary = %v, want %v", got, tt.temporary)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not match %v", tt.is)
			}
			var ne net.Error
			if tt.timeout && !(errors.As(err, &ne) && ne.Timeout()) {
				t.Errorf("not a timeout")
			}
			var pe *pop3.Error
			if tt.code != "" || (tt.is == nil && !tt.timeout) {
				if !errors.As(err, &pe) || pe.Code != tt.code {
					t.Errorf("want *Error with code %q", tt.code)
				}
			}
			if c != nil && !tt.atDial {
				var err error
				if loggedIn {
					err = c.Noop(ctx)
				} else {
					err = c.Login(ctx, creds, pop3.MechanismUser)
				}
				if tt.usable && err != nil {
					t.Errorf("session unusable: %v", err)
				}
				if !tt.usable && !errors.Is(err, pop3.ErrClosed) {
					t.Errorf("Noop on a broken session = %v, want ErrClosed", err)
				}
			}
		})
	}
}

func TestQuitDropAfterCommit(t *testing.T) {
	// The server applies the deletions, then the connection drops before
	// the client sees +OK: Quit fails, yet the messages are gone. Callers
	// must treat a failed Quit as "outcome unknown".
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(2, simpleMessage)...),
		pop3test.WithFault(pop3test.Drop("QUIT", 0)))
	c := login(t, srv, nil)
	if err := c.Dele(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(context.Background()); err == nil || !pop3.Temporary(err) {
		t.Fatalf("Quit = %v", err)
	}
	srv.WaitIdle(time.Second)
	if n := len(srv.Messages(user)); n != 1 {
		t.Fatalf("%d messages left, want 1", n)
	}
}

func TestDialContextCancelled(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithFault(pop3test.Stall("GREETING")))
	opts := plain()
	opts.Timeout = 10 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := pop3.Dial(ctx, srv.Addr(), opts)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 2*time.Second {
		t.Fatalf("Dial = %v after %v", err, time.Since(start))
	}
}

func TestCloseFromAnotherGoroutine(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass), pop3test.WithFault(pop3test.Stall("STAT")))
	opts := plain()
	opts.Timeout = 10 * time.Second
	c := login(t, srv, opts)
	time.AfterFunc(50*time.Millisecond, func() { c.Close() })
	start := time.Now()
	if _, _, err := c.Stat(context.Background()); err == nil || time.Since(start) > 2*time.Second {
		t.Fatalf("Stat = %v after %v", err, time.Since(start))
	}
}
