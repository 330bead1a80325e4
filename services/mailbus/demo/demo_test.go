package demo

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/mailmsg"
	"github.com/mailbus/mailbus/pkg/pop3"
)

func dialPOP3(t *testing.T, s *POP3Server) *pop3.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pop3.Dial(ctx, s.Addr().String(), &pop3.Options{Security: pop3.SecurityNone})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestPOP3Server checks the demo POP3 server with mailbus's own POP3
// client: login, one session at a time, UIDL, pipelined byte-exact RETR
// (dot-stuffing included), TOP, and DELE applied at QUIT only.
func TestPOP3Server(t *testing.T) {
	s, err := StartPOP3("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dotted := []byte("From: a@example.org\r\nSubject: dots\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n")
	s.Deliver(dotted)
	ctx := context.Background()

	bad := dialPOP3(t, s)
	if err := bad.Login(ctx, pop3.Credentials{Username: POP3User, Password: "wrong"}, pop3.MechanismAuto); !errors.Is(err, pop3.ErrAuthFailed) {
		t.Fatalf("wrong password: %v, want ErrAuthFailed", err)
	}

	c := dialPOP3(t, s)
	if err := c.Login(ctx, pop3.Credentials{Username: POP3User, Password: POP3Password}, pop3.MechanismAuto); err != nil {
		t.Fatal(err)
	}
	other := dialPOP3(t, s)
	err = other.Login(ctx, pop3.Credentials{Username: POP3User, Password: POP3Password}, pop3.MechanismAuto)
	var pe *pop3.Error
	if !errors.As(err, &pe) || pe.Code != "IN-USE" {
		t.Fatalf("second session: %v, want [IN-USE]", err)
	}

	want := append(POP3Messages(), Message{Raw: dotted})
	uidls, err := c.Uidl(ctx)
	if err != nil || len(uidls) != len(want) {
		t.Fatalf("UIDL: %v %v", uidls, err)
	}
	nums := make([]int, len(want))
	for i := range nums {
		nums[i] = i + 1
	}
	err = c.RetrPipelined(ctx, nums, func(n int, r io.Reader) error {
		got, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want[n-1].Raw) {
			t.Errorf("RETR %d not byte-exact:\n%q\nwant\n%q", n, got, want[n-1].Raw)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Top(ctx, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	head, _ := io.ReadAll(r)
	r.Close()
	if !bytes.HasSuffix(head, []byte("\r\n\r\n")) || !bytes.Contains(head, []byte("Subject: ")) {
		t.Fatalf("TOP 1 0: %q", head)
	}
	if err := c.Dele(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if s.Count() != len(want) {
		t.Fatal("DELE applied before QUIT")
	}
	if err := c.Quit(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Count() != len(want)-1 {
		t.Fatalf("after QUIT: %d messages, want %d", s.Count(), len(want)-1)
	}
	// The lock is released: a new session logs in.
	again := dialPOP3(t, s)
	if err := again.Login(ctx, pop3.Credentials{Username: POP3User, Password: POP3Password}, pop3.MechanismAuto); err != nil {
		t.Fatal(err)
	}
}

// TestIMAPServer checks the seeded folders as an IMAP client sees them.
func TestIMAPServer(t *testing.T) {
	s, err := StartIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	all := IMAPMessages()
	total := 0
	for _, f := range IMAPFolders {
		held, err := s.Messages(f)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range all {
			if m.Folder == f {
				n++
			}
		}
		if len(held) != n || n == 0 {
			t.Fatalf("%s: %d messages, want %d", f, len(held), n)
		}
		total += n
	}
	if total < 24 {
		t.Fatalf("only %d sample messages", total)
	}
}

// TestCorpus: the sample mail parses cleanly, has attachments in several
// folders, and is the same on every call.
func TestCorpus(t *testing.T) {
	withAttachments := map[string]int{}
	for _, m := range append(IMAPMessages(), POP3Messages()...) {
		p := mailmsg.Parse(m.Raw, nil)
		if len(p.Errors) > 0 {
			t.Errorf("%s: parse errors %v", m.MessageID, p.Errors)
		}
		if p.HasAttachments {
			withAttachments[m.Folder]++
		}
		if !strings.Contains(string(m.Raw), "\r\n\r\n") || strings.Contains(strings.ReplaceAll(string(m.Raw), "\r\n", ""), "\n") {
			t.Errorf("%s: not CRLF throughout", m.MessageID)
		}
	}
	if withAttachments["INBOX"] < 2 || withAttachments["Archive"] < 2 || withAttachments["Sent"] < 1 {
		t.Fatalf("attachments per folder: %v", withAttachments)
	}
	a, b := IMAPMessages(), IMAPMessages()
	for i := range a {
		if !bytes.Equal(a[i].Raw, b[i].Raw) {
			t.Fatal("the sample mail is not deterministic")
		}
	}
}

// TestNewMail: the demo's new mail parses, is dated now and has a new
// Message-ID each time; delivered, an IMAP client sees it.
func TestNewMail(t *testing.T) {
	s, err := StartIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	seen := map[string]bool{}
	for n := 0; n < 7; n++ {
		m := NewMail(n, now.Add(time.Duration(n)*time.Second))
		p := mailmsg.Parse(m.Raw, nil)
		if len(p.Errors) > 0 || !strings.Contains(string(m.Raw), "Date: "+m.Date.Format(time.RFC1123Z)) || seen[m.MessageID] {
			t.Fatalf("new mail %d: errors %v, date %v, id %s", n, p.Errors, m.Date, m.MessageID)
		}
		seen[m.MessageID] = true
		if err := s.Deliver(m); err != nil {
			t.Fatal(err)
		}
	}
	held, err := s.Messages("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	for id := range seen {
		found := false
		for _, h := range held {
			found = found || h.MessageID == id
		}
		if !found {
			t.Fatalf("%s not in INBOX", id)
		}
	}
}
