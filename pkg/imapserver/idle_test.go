package imapserver

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// watchSession is a plainSession with SessionIdleWatch: during IDLE, each
// value sent on updates is written as EXISTS by a goroutine of its own;
// stop returns stopErr.
type watchSession struct {
	plainSession
	updates chan uint32
	stopErr error
	stopped atomic.Bool
}

func (s *watchSession) IdleWatch(w *UpdateWriter) (func() error, error) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case n := <-s.updates:
				if err := w.WriteNumMessages(n); err != nil {
					return
				}
			case <-quit:
				return
			}
		}
	}()
	return func() error {
		close(quit)
		<-done
		s.stopped.Store(true)
		return s.stopErr
	}, nil
}

// testConn serves one connection of a session and returns the client's
// side: its connection, and a function reading one line.
func testConn(t *testing.T, sess Session) (net.Conn, func() string) {
	t.Helper()
	srv := New(&Options{
		NewSession:   func(*Conn) (Session, *GreetingData, error) { return sess, nil, nil },
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIdle: {}},
		InsecureAuth: true,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r := bufio.NewReader(conn)
	return conn, func() string {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		return strings.TrimRight(l, "\r\n")
	}
}

// TestIdleWatch: IDLE with a SessionIdleWatch writes the session's
// updates, ends them (stop) when DONE comes and before the tagged
// answer, which is stop's error when it has one.
func TestIdleWatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stopErr error
		tagged  string
	}{
		{"ok", nil, "t3 OK"},
		{"stop fails", &imap.Error{Type: imap.StatusResponseTypeNo, Text: "gone"}, "t3 NO gone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sess := &watchSession{updates: make(chan uint32), stopErr: tc.stopErr}
			conn, line := testConn(t, sess)
			line() // greeting
			fmt.Fprintf(conn, "t1 LOGIN u p\r\n")
			if l := line(); !strings.HasPrefix(l, "t1 OK") {
				t.Fatalf("LOGIN: %s", l)
			}
			fmt.Fprintf(conn, "t2 SELECT INBOX\r\n")
			for l := line(); !strings.HasPrefix(l, "t2 "); l = line() {
			}
			fmt.Fprintf(conn, "t3 IDLE\r\n")
			if l := line(); !strings.HasPrefix(l, "+ ") {
				t.Fatalf("IDLE: %s", l)
			}
			for _, n := range []uint32{2, 3} {
				sess.updates <- n
				if l, want := line(), fmt.Sprintf("* %d EXISTS", n); l != want {
					t.Fatalf("update: %q, want %q", l, want)
				}
			}
			fmt.Fprintf(conn, "DONE\r\n")
			if l := line(); !strings.HasPrefix(l, tc.tagged) {
				t.Errorf("after DONE: %q, want %q", l, tc.tagged)
			}
			if !sess.stopped.Load() {
				t.Error("IDLE answered before stop returned")
			}
		})
	}
}

// TestCommandsAcrossReads: commands are read whole however the client's
// bytes arrive: one byte per write (each waited for with no buffer), or
// several commands in one write (the rest stays buffered for the next).
func TestCommandsAcrossReads(t *testing.T) {
	conn, line := testConn(t, &watchSession{})
	line() // greeting
	for _, b := range []byte("t1 LOGIN u p\r\n") {
		if _, err := conn.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	if l := line(); !strings.HasPrefix(l, "t1 OK") {
		t.Fatalf("LOGIN: %s", l)
	}
	fmt.Fprintf(conn, "t2 NOOP\r\nt3 CAPABILITY\r\nt4 NOOP\r\n")
	var tagged []string
	for len(tagged) < 3 {
		if l := line(); !strings.HasPrefix(l, "* ") {
			tagged = append(tagged, l)
		}
	}
	for i, l := range tagged {
		if want := fmt.Sprintf("t%d OK", i+2); !strings.HasPrefix(l, want) {
			t.Errorf("answer %d: %q, want %q", i, l, want)
		}
	}
}
