package imapgw

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// rawIMAP is a logged-in IMAP connection spoken to line by line.
type rawIMAP struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr, user, token string) *rawIMAP {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawIMAP{t: t, conn: conn, r: bufio.NewReader(conn)}
	c.line() // greeting
	c.send("l LOGIN %s %s\r\n", user, token)
	if got := c.tagged("l"); !strings.HasPrefix(got, "OK") {
		t.Fatalf("LOGIN: %s", got)
	}
	return c
}

func (c *rawIMAP) send(format string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format, args...); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *rawIMAP) line() string {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(waitFor))
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// tagged reads up to the answer tagged tag and returns it without the tag.
func (c *rawIMAP) tagged(tag string) string {
	c.t.Helper()
	for {
		if l := c.line(); strings.HasPrefix(l, tag+" ") {
			return strings.TrimPrefix(l, tag+" ")
		}
	}
}

// until waits for cond; only a bug makes it wait long (no assertion is
// on time).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", waitFor, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAppendAnnouncedSizeNotAllocated: a client that announces a 256 MiB
// literal and sends 10 bytes of it holds the budget, not the memory;
// when it disconnects mid-literal, the budget is free again and APPEND
// works.
func TestAppendAnnouncedSizeNotAllocated(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	const huge = 256 << 20
	gw := e.gateway(func(c *Config) { c.MaxMessageSize, c.MaxAppendBytes = huge, huge })
	for _, literal := range []string{"{%d}", "{%d+}"} { // synchronizing, LITERAL+
		ok := t.Run(literal, func(t *testing.T) {
			c := dialRaw(t, gw.addr, "work", tok)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			c.send("a APPEND INBOX "+literal+"\r\n", huge)
			if !strings.HasSuffix(literal, "+}") {
				if l := c.line(); !strings.HasPrefix(l, "+") {
					t.Fatalf("APPEND: %s, want a continuation", l)
				}
			}
			c.send("From: a\r\n")
			until(t, "the APPEND to hold the budget", func() bool { return gw.g.appends.inUse.Load() == huge })
			c.conn.Close()
			until(t, "the budget to be released", func() bool { return gw.g.appends.inUse.Load() == 0 })
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if d := after.TotalAlloc - before.TotalAlloc; d > huge/4 {
				t.Errorf("an APPEND announcing %d bytes and sending 10 allocated %d bytes", huge, d)
			}
		})
		if !ok {
			return // the budget may be held: the next APPEND would wait
		}
	}
	cl := gw.login(t, "work", tok, nil)
	raw := testMail("after")
	app := cl.Append("INBOX", int64(len(raw)), nil)
	io.WriteString(app, raw)
	app.Close()
	if _, err := app.Wait(); err != nil {
		t.Fatalf("APPEND after the disconnects: %v", err)
	}
	if n := e.count(inbox.Id); n != 1 {
		t.Errorf("INBOX has %d messages, want 1", n)
	}
}

// padded is testMail padded to size bytes.
func padded(subject string, size int) string {
	m := testMail(subject)
	return "X-Pad: " + strings.Repeat("x", size-len(m)-len("X-Pad: \r\n")) + "\r\n" + m
}

// TestAppendBudgetWaits: APPENDs beyond the gateway's budget wait for it
// and complete; a literal larger than the whole budget is NO [TOOBIG]
// (APPENDLIMIT is the budget then).
func TestAppendBudgetWaits(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	const budget, size = 1000, 600
	gw := e.gateway(func(c *Config) { c.MaxAppendBytes = budget })

	first := dialRaw(t, gw.addr, "work", tok)
	sent := []string{padded("first", size)}
	first.send("a APPEND INBOX {%d}\r\n", size)
	if l := first.line(); !strings.HasPrefix(l, "+") {
		t.Fatalf("APPEND: %s", l)
	}
	first.send("%s", sent[0][:size/2])
	until(t, "the first APPEND to hold the budget", func() bool { return gw.g.appends.inUse.Load() == size })

	errs := make(chan error, 2)
	for i := range 2 {
		raw := padded(fmt.Sprint("waiting", i), size)
		sent = append(sent, raw)
		cl := gw.login(t, "work", tok, nil)
		go func() {
			app := cl.Append("INBOX", int64(len(raw)), nil)
			io.WriteString(app, raw)
			app.Close()
			_, err := app.Wait()
			errs <- err
		}()
	}
	until(t, "two APPENDs to wait for the budget", func() bool { return gw.g.appends.waiting.Load() == 2 })
	if n := gw.g.appends.inUse.Load(); n != size {
		t.Fatalf("%d bytes in use while two wait, want %d", n, size)
	}
	first.send("%s\r\n", sent[0][size/2:])
	if got := first.tagged("a"); !strings.HasPrefix(got, "OK") {
		t.Fatalf("first APPEND: %s", got)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("waiting APPEND: %v", err)
		}
	}
	resp, err := e.mailboxes().ListMessages(callCtx(t), &mailbusv1.ListMessagesRequest{MailboxId: inbox.Id, PageSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range resp.Messages {
		got = append(got, string(e.rawMsg(m.Id)))
	}
	slices.Sort(got)
	slices.Sort(sent)
	if !slices.Equal(got, sent) {
		t.Errorf("stored %d messages, not the 3 sent", len(got))
	}
	if n := gw.g.appends.inUse.Load(); n != 0 {
		t.Errorf("%d bytes of the budget still held", n)
	}

	first.send("b APPEND INBOX {%d}\r\n", budget+1)
	if got := first.tagged("b"); !strings.HasPrefix(got, "NO [TOOBIG]") {
		t.Errorf("APPEND beyond the budget: %s, want NO [TOOBIG]", got)
	}
	caps, err := gw.login(t, "work", tok, nil).Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.Cap(fmt.Sprint("APPENDLIMIT=", budget))) {
		t.Errorf("capabilities %v, want APPENDLIMIT=%d", caps, budget)
	}
}

// TestReadLiteral: readLiteral reads exactly the literal, however it
// arrives, and reports one that ends early.
func TestReadLiteral(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 20<<10) // 320 KiB: grows several times
	for _, tc := range []struct {
		name    string
		r       io.Reader
		size    int64
		want    []byte
		wantErr error
	}{
		{"empty", strings.NewReader(""), 0, []byte{}, nil},
		{"small", strings.NewReader("hello"), 5, []byte("hello"), nil},
		{"big", bytes.NewReader(big), int64(len(big)), big, nil},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(big[:100<<10])), 100 << 10, big[:100<<10], nil},
		{"data with EOF", iotest.DataErrReader(strings.NewReader("hello")), 5, []byte("hello"), nil},
		{"ends early", strings.NewReader("hel"), 5, nil, io.ErrUnexpectedEOF},
		{"fails", iotest.ErrReader(io.ErrClosedPipe), 5, nil, io.ErrClosedPipe},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readLiteral(tc.r, tc.size)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("read %d bytes, want %d", len(got), len(tc.want))
			}
			if err == nil && int64(cap(got)) != tc.size {
				t.Errorf("buffer of %d bytes for %d", cap(got), tc.size)
			}
		})
	}
}
