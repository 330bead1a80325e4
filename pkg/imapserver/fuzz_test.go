package imapserver

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// condSession is a session with CONDSTORE and QRESYNC over plainSession's
// one message.
type condSession struct{ plainSession }

func (condSession) StoreUnchangedSince(_ *FetchWriter, numSet imap.NumSet, _ *imap.StoreFlags, _ uint64) (imap.NumSet, error) {
	if _, ok := numSet.(imap.UIDSet); ok {
		return imap.UIDSetNum(1), nil
	}
	return imap.SeqSetNum(1), nil
}

func (condSession) Vanished(imap.UIDSet, uint64) (imap.UIDSet, error) {
	return imap.UIDSet{imap.UIDRange{Start: 2, Stop: 5}}, nil
}

func (condSession) Select(string, *imap.SelectOptions) (*imap.SelectData, error) {
	return &imap.SelectData{NumMessages: 1, UIDNext: 6, UIDValidity: 1, HighestModSeq: 9}, nil
}

// panicLog records what the server logs; a recovered panic is logged.
type panicLog struct {
	mu  sync.Mutex
	out []string
}

func (l *panicLog) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.out = append(l.out, fmt.Sprintf(format, args...))
}

func (l *panicLog) panics() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.out {
		if strings.Contains(s, "panic") {
			return s
		}
	}
	return ""
}

// FuzzCommandLine: no command line, after ENABLE QRESYNC and SELECT,
// makes the server panic (imapserver recovers a panic and logs it, then
// drops the connection); the CONDSTORE and QRESYNC parsers are new code.
func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		"UID FETCH 1:* (FLAGS MODSEQ) (CHANGEDSINCE 3 VANISHED)",
		"FETCH 1 (FLAGS) (CHANGEDSINCE 0)",
		"STORE 1 (UNCHANGEDSINCE 0) +FLAGS.SILENT (\\Seen)",
		"UID STORE 1:* (UNCHANGEDSINCE 18446744073709551615) FLAGS (a b)",
		"SEARCH RETURN (MIN MAX) MODSEQ \"/flags/\\\\seen\" all 5 OR MODSEQ 1 NOT MODSEQ 2",
		"SELECT INBOX (QRESYNC (1 9 1:5 (1:2 1:2)))",
		"EXAMINE INBOX (CONDSTORE QRESYNC (1 9))",
		"STATUS INBOX (HIGHESTMODSEQ MESSAGES)",
		"LIST \"\" * RETURN (STATUS (HIGHESTMODSEQ))",
		"FETCH 0:x FLAGS",
	} {
		f.Add(s)
	}
	log := &panicLog{}
	srv := New(&Options{
		NewSession:   func(*Conn) (Session, *GreetingData, error) { return condSession{}, nil, nil },
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapQResync: {}},
		InsecureAuth: true,
		Logger:       log,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	go srv.Serve(ln)
	f.Cleanup(func() { srv.Close() })
	f.Fuzz(func(t *testing.T, line string) {
		// One line without a literal (a literal waits for its bytes), and
		// no command that waits for the client (IDLE, AUTHENTICATE).
		up := strings.ToUpper(line)
		if strings.ContainsAny(line, "\r\n{") || strings.Contains(up, "IDLE") || strings.Contains(up, "AUTHENTICATE") {
			return
		}
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(conn, "a LOGIN u p\r\nb ENABLE QRESYNC\r\nc SELECT INBOX\r\nx %s\r\nz NOOP\r\n", line)
		r := bufio.NewReader(conn)
		for {
			l, err := r.ReadString('\n')
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatalf("no answer to %q and NOOP", line)
			}
			if err != nil || strings.HasPrefix(l, "z ") {
				break // answered, or the connection ended (LOGOUT, a bad line)
			}
		}
		if p := log.panics(); p != "" {
			t.Fatalf("the server panicked on %q: %s", line, p)
		}
	})
}
