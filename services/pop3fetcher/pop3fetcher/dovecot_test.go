package pop3fetcher_test

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// dovecotAccount creates an account on the Dovecot instance with the
// given security: plaintext and STLS on the POP3 port, implicit TLS on
// the POP3S port (verified against the instance's certificate through
// Config.RootCAs).
func (e *env) dovecotAccount(t testing.TB, d *dovecottest.Server, sec mailbusv1.Security, user, pw string, mode mailbusv1.Pop3Mode) *mailbusv1.Account {
	t.Helper()
	addr := d.POP3Addr()
	if sec == mailbusv1.Security_SECURITY_TLS {
		addr = d.POP3SAddr()
	}
	host, port := hostPort(t, addr)
	return e.createAccount(t, account{host: host, port: port, security: sec, user: user, secret: pw, mode: mode})
}

func deliver(t testing.TB, d *dovecottest.Server, user string, msgs ...[]byte) {
	t.Helper()
	for _, m := range msgs {
		if err := d.Deliver(user, "INBOX", m); err != nil {
			t.Fatalf("deliver: %v", err)
		}
	}
}

func inboxCount(t testing.TB, d *dovecottest.Server, user string) int {
	t.Helper()
	n, err := d.MessageCount(user, "INBOX")
	if err != nil {
		t.Fatalf("message count: %v", err)
	}
	return n
}

// TestDovecot runs keep and delete mode against a real Dovecot over each
// transport security: the first pass stores everything once, a second
// finds nothing new, a message delivered between passes arrives once; keep
// mode leaves the maildrop intact, delete mode empties it.
func TestDovecot(t *testing.T) {
	dovecottest.Require(t)
	securities := []struct {
		name string
		sec  mailbusv1.Security
	}{
		{"plaintext", mailbusv1.Security_SECURITY_NONE},
		{"STLS", mailbusv1.Security_SECURITY_STARTTLS},
		{"implicit TLS", mailbusv1.Security_SECURITY_TLS},
	}
	for _, s := range securities {
		for _, mode := range []mailbusv1.Pop3Mode{keep, dele} {
			t.Run(s.name+" "+mode.String(), func(t *testing.T) {
				t.Parallel()
				d := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "bob", Password: "dove-pw-1"}}})
				e := startStore(t)
				var all [][]byte
				for i := 1; i <= 5; i++ {
					all = append(all, message(i))
				}
				deliver(t, d, "bob", all...)
				acct := e.dovecotAccount(t, d, s.sec, "bob", "dove-pw-1", mode)
				f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.RootCAs = d.CertPool() })

				res := poll(t, f, acct)
				if res.Messages != 5 || res.Fetched != 5 {
					t.Errorf("first pass: %+v", res)
				}
				res = poll(t, f, acct)
				if res.New != 0 || res.Fetched != 0 {
					t.Errorf("second pass: %+v", res)
				}
				deliver(t, d, "bob", message(6))
				all = append(all, message(6))
				res = poll(t, f, acct)
				if res.New != 1 || res.Fetched != 1 {
					t.Errorf("pass after a delivery: %+v", res)
				}
				res = poll(t, f, acct)
				if res.New != 0 {
					t.Errorf("pass after that: %+v", res)
				}
				stored := e.checkStoredExactly(t, acct.Id, all)
				e.checkOneEventEach(t, acct.Id, stored)
				want := 6
				if mode == dele {
					want = 0
				}
				if n := inboxCount(t, d, "bob"); n != want {
					t.Errorf("the maildrop holds %d messages, want %d", n, want)
				}
				e.checkNoSecretLogged(t, "dove-pw-1")
			})
		}
	}
}

// dovecotCRLF is what Dovecot's POP3 server gives back of a message stored
// in a Maildir once the fetcher drops the CRLF Dovecot appends to a message
// without a final line break (Config.ExactListSizes: Dovecot's LIST sizes
// are exact): the message as delivered, except that every bare LF has
// become CRLF. That transformation remains: Dovecot sends a bare LF as
// CRLF and counts it so in LIST, so no client can tell it from a CRLF
// that was delivered (see pkg/pop3's documentation).
func dovecotCRLF(data []byte) []byte {
	var b bytes.Buffer
	for i, c := range data {
		if c == '\n' && (i == 0 || data[i-1] != '\r') {
			b.WriteByte('\r')
		}
		b.WriteByte(c)
	}
	return b.Bytes()
}

// TestByteExactDovecot fetches the corpus (with the 20 MB message) from
// Dovecot over implicit TLS, with Dovecot listed in Config.ExactListSizes,
// and compares what the store returns with the delivered octets: equal
// for every CRLF message, the one without a final line break included; a
// message with bare LFs comes back with CRLFs (dovecotCRLF).
func TestByteExactDovecot(t *testing.T) {
	dovecottest.Require(t)
	d := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "bob", Password: "pw"}}})
	e := startStore(t)
	var want [][]byte
	for _, m := range corpus(false) {
		deliver(t, d, "bob", m.data)
		want = append(want, m.data)
	}
	bareLF := []byte("Subject: bare LF\n\nline one\nline two\r\n.line three\n")
	deliver(t, d, "bob", bareLF)
	want = append(want, dovecotCRLF(bareLF))
	acct := e.dovecotAccount(t, d, mailbusv1.Security_SECURITY_TLS, "bob", "pw", keep)
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) {
		c.RootCAs = d.CertPool()
		c.ExactListSizes = []string{acct.Host}
	})
	res := poll(t, f, acct)
	if res.Fetched != len(want) {
		t.Errorf("pass: %+v", res)
	}
	stored := e.checkStoredExactly(t, acct.Id, want)
	e.checkOneEventEach(t, acct.Id, stored)
}

// TestDovecotUTF8 records what Dovecot does about RFC 6856: its POP3
// server does not offer UTF8 (before or after login), answers the command
// with "-ERR" and goes on, and sends raw UTF-8 as it holds it without it
// (TestByteExactDovecot checks the whole corpus through the fetcher).
func TestDovecotUTF8(t *testing.T) {
	dovecottest.Require(t)
	d := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "bob", Password: "pw"}}})
	raw := utf8Corpus()[0].data
	deliver(t, d, "bob", raw)
	ctx := callCtx(t)
	c, err := pop3.Dial(ctx, d.POP3Addr(), &pop3.Options{Security: pop3.SecurityNone, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	noUTF8 := func(when string) {
		caps, err := c.Capabilities(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if offered, _ := caps.UTF8(); offered {
			t.Errorf("Dovecot offers UTF8 %s login: %v", when, caps)
		}
		var pe *pop3.Error
		if err := c.UTF8(ctx); !errors.As(err, &pe) {
			t.Errorf("UTF8 %s login: %v, want -ERR", when, err)
		}
	}
	noUTF8("before")
	if err := c.Login(ctx, pop3.Credentials{Username: "bob", Password: "pw"}, pop3.MechanismUser); err != nil {
		t.Fatal(err)
	}
	noUTF8("after")
	r, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	if !bytes.Equal(got, raw) {
		t.Errorf("RETR without UTF8:\n%q\nwant\n%q", got, raw)
	}
	if err := c.Quit(ctx); err != nil {
		t.Error(err)
	}
}
