package pop3test

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// raw is a minimal line client for checking the server on the wire.
type raw struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, s *Server) *raw {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	r := &raw{t: t, c: c, br: bufio.NewReader(c)}
	if g := r.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return r
}

func (r *raw) line() string {
	r.t.Helper()
	l, err := r.br.ReadString('\n')
	if err != nil {
		r.t.Fatalf("read: %v (got %q)", err, l)
	}
	return l
}

func (r *raw) cmd(line string) string {
	r.t.Helper()
	if _, err := r.c.Write([]byte(line + "\r\n")); err != nil {
		r.t.Fatal(err)
	}
	return r.line()
}

// multi reads a multi-line body as sent, terminator included.
func (r *raw) multi() string {
	r.t.Helper()
	var b strings.Builder
	for {
		l := r.line()
		b.WriteString(l)
		if l == ".\r\n" {
			return b.String()
		}
	}
}

func (r *raw) login(user, pass string) {
	r.t.Helper()
	r.cmd("USER " + user)
	if l := r.cmd("PASS " + pass); !strings.HasPrefix(l, "+OK") {
		r.t.Fatalf("PASS: %q", l)
	}
}

func TestWireStuffing(t *testing.T) {
	tests := []struct{ data, wire string }{
		{"a\r\n", "a\r\n.\r\n"},
		{".a\r\n..b\r\n", "..a\r\n...b\r\n.\r\n"},
		{"no newline", "no newline\r\n.\r\n"},
		{"a\r\n.", "a\r\n..\r\n.\r\n"},
		{"bare\n.lf\r\n", "bare\n.lf\r\n.\r\n"},
		{"", "\r\n.\r\n"},
	}
	var msgs []Message
	for _, tt := range tests {
		msgs = append(msgs, Message{Data: []byte(tt.data)})
	}
	s := NewServer(t, WithMailbox("u", "p", msgs...))
	r := dialRaw(t, s)
	r.login("u", "p")
	for i, tt := range tests {
		if l := r.cmd("RETR " + string(rune('1'+i))); !strings.HasPrefix(l, "+OK ") {
			t.Fatalf("RETR: %q", l)
		}
		if got := r.multi(); got != tt.wire {
			t.Errorf("%q sent as %q, want %q", tt.data, got, tt.wire)
		}
	}
}

func TestLockingAndCommit(t *testing.T) {
	s := NewServer(t, WithMailbox("u", "p", Message{Data: []byte("1\r\n")}, Message{UID: "keep", Data: []byte("2\r\n")}))
	a := dialRaw(t, s)
	a.login("u", "p")
	b := dialRaw(t, s)
	b.cmd("USER u")
	if l := b.cmd("PASS p"); !strings.HasPrefix(l, "-ERR [IN-USE]") {
		t.Fatalf("second login: %q", l)
	}
	if s.MaxConcurrentSessions() != 2 || s.ActiveSessions() != 2 {
		t.Fatalf("sessions %d/%d", s.ActiveSessions(), s.MaxConcurrentSessions())
	}
	a.cmd("DELE 1")
	s.Deliver("u", Message{UID: "late", Data: []byte("3\r\n")})
	if l := a.cmd("STAT"); l != "+OK 1 3\r\n" {
		t.Fatalf("STAT after DELE: %q", l)
	}
	if got := len(s.Messages("u")); got != 3 {
		t.Fatalf("deleted before QUIT: %d messages", got)
	}
	a.cmd("QUIT")
	var uids []string
	for _, m := range s.Messages("u") {
		uids = append(uids, m.UID)
	}
	if strings.Join(uids, ",") != "keep,late" {
		t.Fatalf("after QUIT: %v", uids)
	}
	b.cmd("USER u")
	if l := b.cmd("PASS p"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("login after QUIT: %q", l)
	}
	if l := b.cmd("UIDL"); !strings.HasPrefix(l, "+OK") {
		t.Fatal(l)
	}
	if got := b.multi(); got != "1 keep\r\n2 late\r\n.\r\n" {
		t.Fatalf("UIDL %q", got)
	}
	b.c.Close()
	if !s.WaitIdle(time.Second) {
		t.Fatal("not idle")
	}
	if s.TotalSessions() != 2 || s.CommandCount("pass") != 3 {
		t.Fatalf("sessions %d, PASS count %d", s.TotalSessions(), s.CommandCount("PASS"))
	}
	if got := s.Logins(); got["u"] != 2 {
		t.Errorf("logins %v, want u:2", got)
	}
	if got := s.InUseRefusals(); len(got) != 1 || got["u"] != 1 {
		t.Errorf("in-use refusals %v, want u:1", got)
	}
}

func TestFaultMatching(t *testing.T) {
	tests := []struct {
		match, line string
		want        bool
	}{
		{"RETR", "RETR 3", true},
		{"retr", "RETR 3", true},
		{"RETR 3", "RETR 3", true},
		{"RETR 3", "RETR 30", false},
		{"RETR 3", "RETR", false},
		{"TOP 3", "TOP 3 10", true},
		{"AUTH XOAUTH2", "AUTH XOAUTH2 dXNlcj0=", true},
		{"*", "NOOP", true},
		{"*", "GREETING", false},
		{"GREETING", "GREETING", true},
		{"STAT", "STATS", false},
	}
	for _, tt := range tests {
		f := Fault{Match: tt.match}
		if got := f.matches(tt.line); got != tt.want {
			t.Errorf("%q matches %q = %v", tt.match, tt.line, got)
		}
	}
}

func TestFaultTimes(t *testing.T) {
	s := NewServer(t, WithMailbox("u", "p"), WithFault(Reply("NOOP", "-ERR [SYS/TEMP] once").Once()))
	r := dialRaw(t, s)
	r.login("u", "p")
	if l := r.cmd("NOOP"); l != "-ERR [SYS/TEMP] once\r\n" {
		t.Fatalf("first NOOP %q", l)
	}
	if l := r.cmd("NOOP"); l != "+OK\r\n" {
		t.Fatalf("second NOOP %q", l)
	}
}

func TestCAPA(t *testing.T) {
	s := NewServer(t, WithMailbox("u", "p"), WithSTLS(), WithSASL("plain", "XOAUTH2"), WithLoginDelay(60), WithoutUIDL(), WithoutPipelining())
	r := dialRaw(t, s)
	r.cmd("CAPA")
	got := r.multi()
	for _, want := range []string{"STLS\r\n", "SASL PLAIN XOAUTH2\r\n", "LOGIN-DELAY 60\r\n", "RESP-CODES\r\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("CAPA lacks %q: %q", want, got)
		}
	}
	for _, unwanted := range []string{"UIDL", "PIPELINING"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("CAPA has %q: %q", unwanted, got)
		}
	}
}

// TestDowngrade: with WithDowngrade, a session that has not sent UTF8 gets
// a message with raw UTF-8 rewritten (encoded words, a base64 body), with
// LIST counting the rewritten octets; after UTF8 it gets the message as
// stored. 7-bit messages are never changed.
func TestDowngrade(t *testing.T) {
	utf8Msg := "Subject: Gr\xc3\xbc\xc3\x9fe\r\nContent-Transfer-Encoding: 8bit\r\n\r\nK\xc3\xa4se\r\n"
	ascii := "Subject: plain\r\n\r\nhello\r\n"
	s := NewServer(t, WithUTF8("USER"), WithDowngrade(), WithMailbox("u", "p", Message{Data: []byte(utf8Msg)}, Message{Data: []byte(ascii)}))
	wantDown := "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nMIME-Version: 1.0\r\nContent-Transfer-Encoding: base64\r\n\r\nS8Okc2UNCg==\r\n"
	for _, tc := range []struct {
		name  string
		utf8  bool
		first string
	}{{"ascii mode", false, wantDown}, {"utf-8 mode", true, utf8Msg}} {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, s)
			if tc.utf8 {
				if got := r.cmd("UTF8"); !strings.HasPrefix(got, "+OK") {
					t.Fatalf("UTF8: %q", got)
				}
			}
			r.cmd("USER u")
			r.cmd("PASS p")
			if got, want := r.cmd("LIST 1"), "+OK 1 "+strconv.Itoa(len(tc.first))+"\r\n"; got != want {
				t.Errorf("LIST 1: %q, want %q", got, want)
			}
			r.cmd("RETR 1")
			if got := r.multi(); got != tc.first+".\r\n" {
				t.Errorf("RETR 1:\n%q\nwant\n%q", got, tc.first+".\r\n")
			}
			r.cmd("RETR 2")
			if got := r.multi(); got != ascii+".\r\n" {
				t.Errorf("RETR 2: %q", got)
			}
			r.cmd("QUIT")
			s.WaitIdle(5 * time.Second)
		})
	}
}

// TestAutologout: a session silent for the autologout time is ended
// without UPDATE (its DELE is not applied) and unlocks the maildrop, so
// that another session can log in; an active session is not ended.
func TestAutologout(t *testing.T) {
	const d = 300 * time.Millisecond
	s := NewServer(t, WithAutologout(d), WithMailbox("u", "p", Message{UID: "one", Data: []byte("1\r\n")}))
	a := dialRaw(t, s)
	a.login("u", "p")
	for i := 0; i < 3; i++ { // active for longer than d in all
		time.Sleep(d / 2)
		if l := a.cmd("NOOP"); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("NOOP %d: %q", i, l)
		}
	}
	a.cmd("DELE 1")
	if l, err := a.br.ReadString('\n'); err != io.EOF {
		t.Fatalf("a silent session: read %q, %v; want the server to close it (EOF)", l, err)
	}
	b := dialRaw(t, s)
	b.cmd("USER u")
	if l := b.cmd("PASS p"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("login after autologout: %q", l)
	}
	if got := len(s.Messages("u")); got != 1 {
		t.Fatalf("autologout applied a DELE: %d messages left", got)
	}
}
