package dovecottest_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
)

var users = []dovecottest.User{
	{Name: "alice", Password: "alice-secret"},
	{Name: "bob", Password: "bob-secret"},
}

// messages have CRLF line ends and lines POP3 has to dot-stuff: one
// starting with ".", one that is only ".".
var messages = [][]byte{
	[]byte("From: Carol <carol@example.org>\r\nTo: alice@example.org\r\nSubject: one\r\n" +
		"Message-ID: <1@example.org>\r\n\r\nHello.\r\n.leading dot\r\n.\r\n..two dots\r\nend\r\n"),
	[]byte("From: dave@example.org\r\nTo: alice@example.org\r\nSubject: two\r\n" +
		"Message-ID: <2@example.org>\r\n\r\nSecond message.\r\n"),
	[]byte("From: erin@example.org\r\nTo: alice@example.org\r\nSubject: three\r\n" +
		"Message-ID: <3@example.org>\r\n\r\n" + strings.Repeat("A long line of body text. ", 20) + "\r\n" +
		strings.Repeat(".x\r\n", 200)),
}

func TestServer(t *testing.T) {
	t.Parallel()
	start := time.Now()
	s := dovecottest.Start(t, &dovecottest.Options{Users: users})
	t.Logf("dovecot up in %v: imap %d imaps %d pop3 %d pop3s %d, dir %s",
		time.Since(start).Round(time.Millisecond), s.IMAPPort, s.IMAPSPort, s.POP3Port, s.POP3SPort, s.Dir)

	t.Run("IMAPStartTLS", func(t *testing.T) {
		c := dialIMAP(t, s.IMAPAddr(), nil)
		if caps := c.capabilities(); !slices.Contains(caps, "STARTTLS") {
			t.Fatalf("pre-login CAPABILITY without STARTTLS: %v", caps)
		}
		c.startTLS(s.TLSConfig())
		c.ok("LOGIN alice alice-secret")
		caps := c.capabilities()
		for _, want := range []string{"CONDSTORE", "QRESYNC", "MOVE", "UIDPLUS", "SPECIAL-USE", "IDLE", "ENABLE"} {
			if !slices.Contains(caps, want) {
				t.Errorf("CAPABILITY lacks %s: %v", want, caps)
			}
		}
		list := strings.Join(c.ok(`LIST "" "*"`), "\n")
		for name, attr := range dovecottest.SpecialUse() {
			if !strings.Contains(list, attr) || !strings.Contains(list, `"/" `+name) {
				t.Errorf("LIST lacks %s %s:\n%s", attr, name, list)
			}
		}
		c.ok("LOGOUT")
	})

	t.Run("IMAPS", func(t *testing.T) {
		// The certificate verifies by name and by IP SAN.
		for _, serverName := range []string{"localhost", "127.0.0.1"} {
			conf := s.TLSConfig()
			conf.ServerName = serverName
			c := dialIMAP(t, s.IMAPSAddr(), conf)
			c.ok("LOGIN bob bob-secret")
			c.ok("LOGOUT")
		}
	})

	t.Run("BadPassword", func(t *testing.T) {
		c := dialIMAP(t, s.IMAPAddr(), nil)
		if _, status := c.cmd("LOGIN alice wrong"); !strings.HasPrefix(status, "NO") {
			t.Fatalf("LOGIN with a wrong password: %s", status)
		}
	})

	t.Run("DeliverIMAPAndPOP3", func(t *testing.T) {
		for i, m := range messages {
			var flags []string
			if i == 1 {
				flags = []string{`\Seen`, `\Flagged`}
			}
			if err := s.Deliver("alice", "INBOX", m, flags...); err != nil {
				t.Fatal(err)
			}
		}
		c := dialIMAP(t, s.IMAPAddr(), nil)
		c.ok("LOGIN alice alice-secret")
		exists, uidValidity := c.selectInfo("INBOX")
		if exists != 3 {
			t.Fatalf("SELECT INBOX: %d EXISTS, want 3", exists)
		}
		c.ok("LOGOUT")

		if n, err := s.MessageCount("alice", "INBOX"); err != nil || n != 3 {
			t.Fatalf("MessageCount = %d, %v", n, err)
		}
		uids, err := s.ListUIDs("alice", "INBOX")
		if err != nil || !slices.Equal(uids, []uint32{1, 2, 3}) {
			t.Fatalf("ListUIDs = %v, %v", uids, err)
		}
		if flags, err := s.Flags("alice", "INBOX", 2); err != nil || !slices.Equal(flags, []string{`\Flagged`, `\Seen`}) {
			t.Fatalf("Flags(2) = %v, %v", flags, err)
		}

		var total int
		for _, m := range messages {
			total += len(m)
		}
		p := dialPOP3(t, s.POP3Addr(), nil)
		p.login("alice", "alice-secret")
		if st := p.ok("STAT"); st != fmt.Sprintf("+OK 3 %d", total) {
			t.Errorf("STAT: %q, want %d octets", st, total)
		}
		var wantUIDL strings.Builder
		for i, uid := range uids {
			fmt.Fprintf(&wantUIDL, "%d %08x%08x\r\n", i+1, uid, uidValidity)
		}
		if got := string(p.multi("UIDL")); got != wantUIDL.String() {
			t.Errorf("UIDL:\n%s\nwant (pop3_uidl_format = %%08Xu%%08Xv):\n%s", got, wantUIDL.String())
		}
		for i, m := range messages {
			if got := p.multi("RETR %d", i+1); !bytes.Equal(got, m) {
				t.Errorf("RETR %d:\n%q\nwant\n%q", i+1, got, m)
			}
		}

		// A second session for the same maildrop is refused while the
		// first one is open.
		p2 := dialPOP3(t, s.POP3Addr(), nil)
		p2.ok("USER alice")
		if st := p2.cmd("PASS alice-secret"); !strings.HasPrefix(st, "-ERR [IN-USE]") {
			t.Errorf("second POP3 session: %q, want -ERR [IN-USE]", st)
		}
		p.ok("QUIT")

		// POP3S, and STLS on the plain port, once the first session is gone.
		ps := dialPOP3(t, s.POP3SAddr(), s.TLSConfig())
		ps.login("alice", "alice-secret")
		if st := ps.ok("STAT"); !strings.HasPrefix(st, "+OK 3 ") {
			t.Errorf("POP3S STAT: %q", st)
		}
		ps.ok("QUIT")
		pt := dialPOP3(t, s.POP3Addr(), nil)
		if capa := string(pt.multi("CAPA")); !strings.Contains(capa, "STLS\r\n") {
			t.Errorf("CAPA without STLS:\n%s", capa)
		}
		pt.stls(s.TLSConfig())
		pt.login("alice", "alice-secret")
		pt.ok("QUIT")
	})

	t.Run("UIDValidity", func(t *testing.T) {
		if err := s.Deliver("bob", "INBOX", messages[0]); err != nil {
			t.Fatal(err)
		}
		c := dialIMAP(t, s.IMAPAddr(), nil)
		c.ok("LOGIN bob bob-secret")
		_, before := c.selectInfo("INBOX")
		c.ok("LOGOUT")
		v, err := s.ChangeUIDValidity("bob", "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		if v == before {
			t.Fatalf("ChangeUIDValidity kept %d", v)
		}
		c = dialIMAP(t, s.IMAPAddr(), nil)
		c.ok("LOGIN bob bob-secret")
		if _, after := c.selectInfo("INBOX"); after != v {
			t.Fatalf("SELECT reports UIDVALIDITY %d, want %d (was %d)", after, v, before)
		}
	})

	t.Run("MailboxHelpers", func(t *testing.T) {
		// Deliver creates an ordinary mailbox on first use; special-use
		// mailboxes exist already.
		for _, mbox := range []string{"Projects/2026", "Sent", "Ünïcödé"} {
			for range 2 {
				if err := s.Deliver("bob", mbox, messages[1]); err != nil {
					t.Fatalf("Deliver to %s: %v", mbox, err)
				}
			}
			if n, err := s.MessageCount("bob", mbox); err != nil || n != 2 {
				t.Fatalf("MessageCount(%s) = %d, %v", mbox, n, err)
			}
		}
		if err := s.SetFlags("bob", "Sent", 1, `\Answered`, "$Forwarded"); err != nil {
			t.Fatal(err)
		}
		if err := s.AddFlags("bob", "Sent", 1, `\Seen`); err != nil {
			t.Fatal(err)
		}
		if err := s.RemoveFlags("bob", "Sent", 1, `\Answered`); err != nil {
			t.Fatal(err)
		}
		if flags, err := s.Flags("bob", "Sent", 1); err != nil || !slices.Equal(flags, []string{`\Seen`, "$Forwarded"}) {
			t.Fatalf("Flags = %v, %v", flags, err)
		}
		if err := s.Expunge("bob", "Sent", 1); err != nil {
			t.Fatal(err)
		}
		if uids, err := s.ListUIDs("bob", "Sent"); err != nil || !slices.Equal(uids, []uint32{2}) {
			t.Fatalf("ListUIDs after Expunge = %v, %v", uids, err)
		}
		if _, err := s.MessageCount("bob", "NoSuchMailbox"); !errors.Is(err, dovecottest.ErrNotFound) {
			t.Fatalf("MessageCount(NoSuchMailbox): %v, want ErrNotFound", err)
		}
		if err := s.Deliver("bob", "INBOX", messages[0], "$Keyword"); err == nil {
			t.Fatal("Deliver with a keyword: no error")
		}
		c := dialIMAP(t, s.IMAPAddr(), nil)
		c.ok("LOGIN bob bob-secret")
		if exists, _ := c.selectInfo("Projects/2026"); exists != 2 {
			t.Fatalf("SELECT Projects/2026: %d EXISTS", exists)
		}
	})

	t.Run("AddUser", func(t *testing.T) {
		if err := s.AddUser("Carol", "carol-secret"); err != nil {
			t.Fatal(err)
		}
		if err := s.AddUser("carol", "again"); err == nil {
			t.Fatal("AddUser of an existing user: no error")
		}
		c := dialIMAP(t, s.IMAPAddr(), nil)
		c.ok("LOGIN carol carol-secret")
		if err := s.Deliver("CAROL", "INBOX", messages[1]); err != nil {
			t.Fatal(err)
		}
		if exists, _ := c.selectInfo("INBOX"); exists != 1 {
			t.Fatalf("carol's INBOX: %d EXISTS", exists)
		}
	})
}

// TestSecondInstance runs beside TestServer's instance with CONDSTORE and
// QRESYNC hidden, and checks that Close leaves nothing behind.
func TestSecondInstance(t *testing.T) {
	t.Parallel()
	dovecottest.Require(t)
	s, err := dovecottest.StartServer(context.Background(), "", &dovecottest.Options{
		Users:            users[:1],
		HideCapabilities: []string{"CONDSTORE", "QRESYNC"},
	})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			t.Logf("log:\n%s", s.LogTail(40))
			s.Close()
		}
	})

	c := dialIMAP(t, s.IMAPSAddr(), s.TLSConfig())
	c.ok("LOGIN alice alice-secret")
	caps := c.capabilities()
	if slices.Contains(caps, "CONDSTORE") || slices.Contains(caps, "QRESYNC") {
		t.Errorf("CONDSTORE/QRESYNC still advertised: %v", caps)
	}
	if !slices.Contains(caps, "MOVE") || !slices.Contains(caps, "IDLE") {
		t.Errorf("hiding CONDSTORE hid more: %v", caps)
	}
	// An open session (a mail process) must not survive Close either.
	c.selectInfo("INBOX")
	p := dialPOP3(t, s.POP3Addr(), nil)
	p.login("alice", "alice-secret")

	pid, dir := s.Pid(), s.Dir
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	t.Logf("Close took %v", time.Since(start).Round(time.Millisecond))
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if left := processesOf(t, s); len(left) > 0 {
		t.Fatalf("processes left after Close (master was %d): %v", pid, left)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("%s still exists: %v", dir, err)
	}
}

// processesOf lists the processes whose command line names the instance or
// its config file.
func processesOf(t *testing.T, s *dovecottest.Server) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(cmdlines) == 0 {
		t.Skipf("no /proc: %v", err)
	}
	var left []string
	for _, p := range cmdlines {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		cmd := string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
		if strings.Contains(cmd, s.Instance()) || strings.Contains(cmd, s.ConfigPath) {
			left = append(left, filepath.Base(filepath.Dir(p))+": "+cmd)
		}
	}
	return left
}

func BenchmarkStartClose(b *testing.B) {
	dovecottest.Require(b)
	for b.Loop() {
		s, err := dovecottest.StartServer(context.Background(), "", nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeliver(b *testing.B) {
	s := dovecottest.Start(b, &dovecottest.Options{Users: users[:1]})
	for b.Loop() {
		if err := s.Deliver("alice", "INBOX", messages[1]); err != nil {
			b.Fatal(err)
		}
	}
}
