package imapserver

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// plainSession is a Session without CONDSTORE: one mailbox, INBOX, with
// one message.
type plainSession struct{}

func (plainSession) Close() error                             { return nil }
func (plainSession) Login(string, string) error               { return nil }
func (plainSession) Create(string, *imap.CreateOptions) error { return nil }
func (plainSession) Delete(string) error                      { return nil }
func (plainSession) Rename(string, string, *imap.RenameOptions) error {
	return nil
}
func (plainSession) Subscribe(string) error   { return nil }
func (plainSession) Unsubscribe(string) error { return nil }
func (plainSession) Unselect() error          { return nil }
func (plainSession) Poll(*UpdateWriter, bool) error {
	return nil
}
func (plainSession) Idle(_ *UpdateWriter, stop <-chan struct{}) error {
	<-stop
	return nil
}
func (plainSession) Select(string, *imap.SelectOptions) (*imap.SelectData, error) {
	return &imap.SelectData{NumMessages: 1, UIDNext: 2, UIDValidity: 1, Flags: []imap.Flag{imap.FlagSeen}}, nil
}
func (plainSession) List(w *ListWriter, _ string, _ []string, _ *imap.ListOptions) error {
	return w.WriteList(&imap.ListData{Mailbox: "INBOX", Delim: '/'})
}
func (plainSession) Status(name string, _ *imap.StatusOptions) (*imap.StatusData, error) {
	n := uint32(1)
	return &imap.StatusData{Mailbox: name, NumMessages: &n}, nil
}
func (plainSession) Append(string, imap.LiteralReader, *imap.AppendOptions) (*imap.AppendData, error) {
	return nil, nil
}
func (plainSession) Expunge(*ExpungeWriter, *imap.UIDSet) error { return nil }
func (plainSession) Search(NumKind, *imap.SearchCriteria, *imap.SearchOptions) (*imap.SearchData, error) {
	return &imap.SearchData{All: imap.SeqSetNum(1), ModSeq: 7}, nil
}
func (plainSession) Fetch(w *FetchWriter, _ imap.NumSet, _ *imap.FetchOptions) error {
	rw := w.CreateMessage(1)
	rw.WriteFlags(nil)
	return rw.Close()
}
func (plainSession) Store(w *FetchWriter, _ imap.NumSet, _ *imap.StoreFlags, _ *imap.StoreOptions) error {
	return nil
}
func (plainSession) Copy(imap.NumSet, string) (*imap.CopyData, error) { return nil, nil }

// TestWithoutCondStore: a session that does not implement
// SessionCondStore gets no CONDSTORE, even with imap.CapCondStore in the
// options: it is not announced, ENABLE does not enable it, SELECT writes
// no HIGHESTMODSEQ, and its syntax is BAD, as in go-imap v2.0.0-beta.8.
func TestWithoutCondStore(t *testing.T) {
	for _, caps := range []imap.CapSet{
		{imap.CapIMAP4rev1: {}},
		{imap.CapIMAP4rev1: {}, imap.CapCondStore: {}, imap.CapQResync: {}},
	} {
		t.Run(fmt.Sprint(len(caps)), func(t *testing.T) {
			srv := New(&Options{
				NewSession:   func(*Conn) (Session, *GreetingData, error) { return plainSession{}, nil, nil },
				Caps:         caps,
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
			line := func() string {
				t.Helper()
				conn.SetReadDeadline(time.Now().Add(30 * time.Second))
				l, err := r.ReadString('\n')
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				return strings.TrimRight(l, "\r\n")
			}
			n := 0
			cmd := func(c string) (untagged []string, tagged string) {
				t.Helper()
				n++
				tag := fmt.Sprintf("t%d", n)
				fmt.Fprintf(conn, "%s %s\r\n", tag, c)
				for {
					l := line()
					if strings.HasPrefix(l, tag+" ") {
						return untagged, strings.TrimPrefix(l, tag+" ")
					}
					untagged = append(untagged, l)
				}
			}
			line() // greeting
			for _, tc := range []struct {
				cmd, tagged string
				untagged    []string
			}{
				{"LOGIN u p", "OK", nil},
				{"ENABLE CONDSTORE QRESYNC", "OK", []string{"* ENABLED"}},
				{"SELECT INBOX (CONDSTORE)", "BAD", nil},
				{"SELECT INBOX", "OK", []string{"* 1 EXISTS", "* 0 RECENT", "* OK [UIDVALIDITY 1] UIDs valid", "* OK [UIDNEXT 2] Predicted next UID", "* FLAGS (\\Seen)", "* OK [PERMANENTFLAGS ()] Permanent flags"}},
				{"FETCH 1 (FLAGS)", "OK", []string{"* 1 FETCH (FLAGS ())"}},
				{"FETCH 1 (MODSEQ)", "BAD", nil},
				{"FETCH 1 (FLAGS) (CHANGEDSINCE 1)", "BAD", nil},
				{"UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "BAD", nil},
				{"STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Seen)", "BAD", nil},
				{"SEARCH MODSEQ 1", "BAD", nil},
				{"SEARCH ALL", "OK", []string{"* SEARCH 1"}}, // the session's ModSeq is not written
				{"STATUS INBOX (HIGHESTMODSEQ)", "BAD", nil},
				{`LIST "" * RETURN (STATUS (HIGHESTMODSEQ))`, "BAD", nil},
				{"NOOP", "OK", nil},
			} {
				untagged, tagged := cmd(tc.cmd)
				if !strings.HasPrefix(tagged, tc.tagged) {
					t.Errorf("%s: %s, want %s", tc.cmd, tagged, tc.tagged)
				}
				if tc.untagged != nil && strings.Join(untagged, "\n") != strings.Join(tc.untagged, "\n") {
					t.Errorf("%s: %q, want %q", tc.cmd, untagged, tc.untagged)
				}
			}
			caps, _ := cmd("CAPABILITY")
			if len(caps) != 1 || strings.Contains(caps[0], "CONDSTORE") || strings.Contains(caps[0], "QRESYNC") {
				t.Errorf("CAPABILITY: %q", caps)
			}
		})
	}
}

// TestCondStoreStrictSyntax: RFC 4466 parameters and modifiers given
// twice, and mod-sequences above 2^63-1 (RFC 7162 section 7), are BAD;
// the valid forms next to them are not.
func TestCondStoreStrictSyntax(t *testing.T) {
	srv := New(&Options{
		NewSession:   func(*Conn) (Session, *GreetingData, error) { return condSession{}, nil, nil },
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapQResync: {}},
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
	n := 0
	cmd := func(c string) string {
		t.Helper()
		n++
		tag := fmt.Sprintf("t%d", n)
		fmt.Fprintf(conn, "%s %s\r\n", tag, c)
		for {
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			l, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("%s: read: %v", c, err)
			}
			if strings.HasPrefix(l, tag+" ") {
				return strings.TrimRight(strings.TrimPrefix(l, tag+" "), "\r\n")
			}
		}
	}
	r.ReadString('\n') // greeting
	for _, c := range []string{"LOGIN u p", "ENABLE QRESYNC", "SELECT INBOX"} {
		if got := cmd(c); !strings.HasPrefix(got, "OK") {
			t.Fatalf("%s: %s", c, got)
		}
	}
	for _, tc := range []struct{ cmd, want string }{
		{"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 3 VANISHED)", "OK"},
		{"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 3 CHANGEDSINCE 4)", "BAD"},
		{"UID FETCH 1:* (FLAGS) (CHANGEDSINCE 3 VANISHED VANISHED)", "BAD"},
		{"UID FETCH 1:* (FLAGS) (changedsince 3 CHANGEDSINCE 3)", "BAD"},
		{"FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775807)", "OK"},
		{"FETCH 1 (FLAGS) (CHANGEDSINCE 9223372036854775808)", "BAD"},
		{"FETCH 1 (FLAGS) (CHANGEDSINCE 18446744073709551615)", "BAD"},
		{"STORE 1 (UNCHANGEDSINCE 9223372036854775807) +FLAGS (\\Seen)", "OK"},
		{"STORE 1 (UNCHANGEDSINCE 9223372036854775808) +FLAGS (\\Seen)", "BAD"},
		{"SEARCH MODSEQ 9223372036854775807", "OK"},
		{"SEARCH MODSEQ 9223372036854775808", "BAD"},
		{"SELECT INBOX (QRESYNC (1 9223372036854775808))", "BAD"},
		{"SELECT INBOX (QRESYNC (1 5) QRESYNC (1 6))", "BAD"},
		{"SELECT INBOX (CONDSTORE CONDSTORE)", "BAD"},
		{"SELECT INBOX (CONDSTORE QRESYNC (1 9223372036854775807))", "OK"},
	} {
		if got := cmd(tc.cmd); !strings.HasPrefix(got, tc.want) {
			t.Errorf("%s: %s, want %s", tc.cmd, got, tc.want)
		}
	}
}
