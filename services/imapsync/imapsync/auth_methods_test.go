package imapsync_test

import (
	"bytes"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// Each way of logging in syncs against a real server: SASL PLAIN when
// offered, LOGIN when the server offers no SASL mechanism, OAUTHBEARER or
// XOAUTH2 for a token account, OAUTHBEARER when both are offered (a right
// token syncs; a wrong one parks after the server's JSON challenge, which
// OAUTHBEARER must answer with %x01, else the test server says BAD, which
// would not park; XOAUTH2 takes the challenge as the verdict).
func TestMemLoginMethods(t *testing.T) {
	cases := []struct {
		name   string
		mechs  []string
		method mailbusv1.AuthMethod
		secret string
		used   string
		state  mailbusv1.SyncState
	}{
		{"sasl plain", nil, mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD, "secret", "PLAIN", mailbusv1.SyncState_SYNC_STATE_IDLE},
		{"login", []string{}, mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD, "secret", "LOGIN", mailbusv1.SyncState_SYNC_STATE_IDLE},
		{"xoauth2", []string{"XOAUTH2"}, mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, "good-token", "XOAUTH2", mailbusv1.SyncState_SYNC_STATE_IDLE},
		{"xoauth2 wrong token", []string{"XOAUTH2"}, mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, "stale-token", "XOAUTH2", mailbusv1.SyncState_SYNC_STATE_PARKED},
		{"oauthbearer", []string{"OAUTHBEARER"}, mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, "good-token", "OAUTHBEARER", mailbusv1.SyncState_SYNC_STATE_IDLE},
		{"oauthbearer wrong token", []string{"OAUTHBEARER"}, mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, "stale-token", "OAUTHBEARER", mailbusv1.SyncState_SYNC_STATE_PARKED},
		{"both offered: oauthbearer", []string{"PLAIN", "XOAUTH2", "OAUTHBEARER"}, mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2, "good-token", "OAUTHBEARER", mailbusv1.SyncState_SYNC_STATE_IDLE},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var (
				mu   sync.Mutex
				used []string
			)
			h := &memHooks{
				mechs: c.mechs,
				xoauth2: func(user, token string) (string, error) {
					if user == "alice" && token == "good-token" {
						return "secret", nil
					}
					return "", errors.New("invalid token")
				},
				authUsed: func(mech string) { mu.Lock(); used = append(used, mech); mu.Unlock() },
			}
			e := startStore(t)
			mem := startMemHooked(t, h)
			tp := dialPlain(t, mem.addr, "alice", "secret")
			appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
			mu.Lock()
			used = nil // the test's own client
			mu.Unlock()
			a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", c.secret, func(a *mailbusv1.Account) { a.AuthMethod = c.method })
			startSync(t, e, nil)
			waitFor(t, c.state.String(), func() bool { return e.account(t, a.Id).GetStatus().GetState() == c.state })
			if c.state == mailbusv1.SyncState_SYNC_STATE_IDLE {
				if err := sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")); err != nil {
					t.Error(err)
				}
			} else if r := e.account(t, a.Id).GetStatus().GetReason(); !strings.Contains(r, "authentication failed") {
				t.Errorf("parked with %q", r)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(used) == 0 || slices.ContainsFunc(used, func(m string) bool { return m != c.used }) {
				t.Errorf("logins used %v, want only %s", used, c.used)
			}
		})
	}
}

// STARTTLS against Dovecot: the account syncs, the credentials never go
// over the wire in clear (the TLS handshake follows STARTTLS at once).
func TestDovecotStartTLS(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 3)
	a := e.createAccount(t, s.IMAPAddr(), mailbusv1.Security_SECURITY_STARTTLS, "alice", "secret", nil)
	var (
		mu      sync.Mutex
		written [][]byte // per connection, the bytes written
	)
	startSync(t, e, func(c *imapsync.Config) {
		c.RootCAs = s.CertPool()
		c.WrapConn = func(_ string, nc net.Conn) net.Conn {
			mu.Lock()
			defer mu.Unlock()
			written = append(written, nil)
			return &recordConn{Conn: nc, mu: &mu, buf: &written[len(written)-1]}
		}
	})
	tp := dialDovecot(t, s)
	waitFor(t, "initial sync over STARTTLS", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	mu.Lock()
	defer mu.Unlock()
	if len(written) == 0 {
		t.Fatal("no connection")
	}
	for i, w := range written {
		at := bytes.Index(w, []byte("STARTTLS\r\n"))
		if at < 0 {
			t.Errorf("connection %d: no STARTTLS", i)
			continue
		}
		rest := w[at+len("STARTTLS\r\n"):]
		if len(rest) == 0 || rest[0] != 0x16 { // a TLS handshake record
			t.Errorf("connection %d: after STARTTLS %q, want the TLS handshake", i, rest[:min(len(rest), 20)])
		}
		if bytes.Contains(w, []byte("secret")) || bytes.Contains(bytes.ToUpper(w), []byte("LOGIN ")) {
			t.Errorf("connection %d: credentials in clear", i)
		}
	}
}

// recordConn records what is written on a connection.
type recordConn struct {
	net.Conn
	mu  *sync.Mutex
	buf *[]byte
}

func (c *recordConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	*c.buf = append(*c.buf, b...)
	c.mu.Unlock()
	return c.Conn.Write(b)
}
