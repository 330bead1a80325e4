package pop3fetcher_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// TestByteExactFake fetches the corpus from the fake server (pipelined,
// delete mode) and compares what the store returns (GetRawMessage) with the
// delivered octets. The fake server passes bare CR, bare LF and NUL through
// unchanged and reports exact LIST sizes, so with Config.ExactListSizes
// even the message without a final line break comes back as delivered
// (the CRLF the server appends on the wire is dropped).
func TestByteExactFake(t *testing.T) {
	e := startStore(t)
	var msgs []pop3test.Message
	var want [][]byte
	for _, m := range corpus(true) {
		msgs = append(msgs, pop3test.Message{Data: m.data})
		want = append(want, m.data)
	}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.ExactListSizes = []string{acct.Host} })
	res := poll(t, f, acct)
	if res.Fetched != len(msgs) || res.Deleted != len(msgs) {
		t.Errorf("pass: %+v", res)
	}
	stored := e.checkStoredExactly(t, acct.Id, want)
	e.checkOneEventEach(t, acct.Id, stored)
	if srv.PipelinedCommands() == 0 {
		t.Error("RETR was not pipelined")
	}
}

// TestNoFinalLineBreak: a message without a final line break arrives with
// the CRLF the server appends. Only for a server listed in
// Config.ExactListSizes is that CRLF dropped; by default it is kept, so a
// server whose LIST size is two short of a message that does end in CRLF
// never loses that CRLF. With trimming, the stored size equals the LIST
// size, and the next pass knows the message without downloading it.
func TestNoFinalLineBreak(t *testing.T) {
	noBreak := pop3test.Message{UID: "nb", Data: []byte("Subject: no break\r\n\r\nlast line")}
	withBreak := pop3test.Message{UID: "wb", Data: message(1)}
	cases := []struct {
		name  string
		exact []string
		list  []int // LIST sizes the server reports; nil: the true ones
		want  [][]byte
	}{
		{"default", nil, nil, [][]byte{fakeWire(noBreak.Data), withBreak.Data}},
		{"exact sizes", []string{"*"}, nil, [][]byte{noBreak.Data, withBreak.Data}},
		{"sizes two short, default", nil, []int{len(noBreak.Data), len(withBreak.Data) - 2}, [][]byte{fakeWire(noBreak.Data), withBreak.Data}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStore(t)
			srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", noBreak, withBreak))
			acct := e.fakeAccount(t, srv, "bob", "pw", keep)
			f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.ExactListSizes = tc.exact })
			if tc.list != nil {
				srv.InjectFault(listReply(tc.list...))
			}
			if res := poll(t, f, acct); res.Fetched != 2 {
				t.Errorf("pass: %+v", res)
			}
			idle(t, srv)
			e.checkStoredExactly(t, acct.Id, tc.want)
			retr := srv.CommandCount("RETR")
			if res := poll(t, f, acct); res.New != 0 || res.Known != 2 {
				t.Errorf("next pass: %+v", res)
			}
			idle(t, srv)
			if n := srv.CommandCount("RETR") - retr; n != 0 && tc.list == nil {
				t.Errorf("next pass: %d RETR, want none", n)
			}
		})
	}
}

// TestByteExactUTF8 (issue 17): a server that offers UTF8 (RFC 6856) and
// rewrites ("downgrades") mail with 8-bit octets for a session that has
// not sent it. The fetcher sends UTF8 before authentication, and once
// more after it if the server refused it before; then every message of
// the corpus (raw UTF-8 in headers, addresses and bodies, and every
// 8-bit octet) is stored exactly as the server holds it. A server that
// refuses UTF8 in both states is logged once and fetched from anyway.
func TestByteExactUTF8(t *testing.T) {
	var msgs []pop3test.Message
	var want [][]byte
	for _, m := range corpus(true) {
		if m.name == "20 MB" {
			continue
		}
		msgs = append(msgs, pop3test.Message{Data: m.data})
		want = append(want, m.data)
	}
	login := []string{"CAPA", "UTF8", "USER", "PASS"}
	cases := []struct {
		name   string
		args   []string // of the UTF8 capability
		fault  *pop3test.Fault
		verbs  []string // the commands up to STAT
		exact  bool
		warned bool
	}{
		{"UTF8 USER", []string{"USER"}, nil, login, true, false},
		{"UTF8", nil, nil, login, true, false},
		{"refused before login", nil, ptr(pop3test.Reply("UTF8", "-ERR not in AUTHORIZATION state").Once()), append(login, "UTF8"), true, false},
		{"refused", nil, ptr(pop3test.Reply("UTF8", "-ERR unknown command")), append(login, "UTF8"), false, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStore(t)
			opts := []pop3test.Option{pop3test.WithUTF8(tc.args...), pop3test.WithDowngrade(), pop3test.WithMailbox("bob", "pw", msgs...)}
			if tc.fault != nil {
				opts = append(opts, pop3test.WithFault(*tc.fault))
			}
			srv := pop3test.NewServer(t, opts...)
			acct := e.fakeAccount(t, srv, "bob", "pw", keep)
			f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.ExactListSizes = []string{acct.Host} })
			if res := poll(t, f, acct); res.Fetched != len(msgs) {
				t.Errorf("pass: %+v", res)
			}
			var verbs []string
			for _, c := range srv.Commands() {
				verb, _, _ := strings.Cut(c, " ")
				if verb == "STAT" {
					break
				}
				verbs = append(verbs, verb)
			}
			if !slices.Equal(verbs, tc.verbs) {
				t.Errorf("commands %v, want %v", verbs, tc.verbs)
			}
			if tc.exact {
				stored := e.checkStoredExactly(t, acct.Id, want)
				e.checkOneEventEach(t, acct.Id, stored)
			}
			if warned := strings.Contains(e.logs.String(), "refuses it"); warned != tc.warned {
				t.Errorf("refusal logged: %v, want %v", warned, tc.warned)
			}
		})
	}
}
