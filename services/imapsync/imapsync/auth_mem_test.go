package imapsync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// How a refused login ends: wrong credentials park the account (until it
// is updated); a server that cannot check them now, or goes away, is
// retried with backoff.
func TestMemAuthFailures(t *testing.T) {
	no := func(code imap.ResponseCode) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: "refused"}
	}
	cases := []struct {
		password string // selects the server's answer
		answer   func(c *imapserver.Conn) error
		state    mailbusv1.SyncState
		reason   string
	}{
		{"authenticationfailed", func(*imapserver.Conn) error { return no(imap.ResponseCodeAuthenticationFailed) }, mailbusv1.SyncState_SYNC_STATE_PARKED, "[AUTHENTICATIONFAILED]"},
		{"authorizationfailed", func(*imapserver.Conn) error { return no(imap.ResponseCodeAuthorizationFailed) }, mailbusv1.SyncState_SYNC_STATE_PARKED, "[AUTHORIZATIONFAILED]"},
		{"plain-no", func(*imapserver.Conn) error { return no("") }, mailbusv1.SyncState_SYNC_STATE_PARKED, "authentication failed"},
		{"unavailable", func(*imapserver.Conn) error { return no(imap.ResponseCodeUnavailable) }, mailbusv1.SyncState_SYNC_STATE_RETRYING, "[UNAVAILABLE]"},
		{"serverbug", func(*imapserver.Conn) error { return no(imap.ResponseCodeServerBug) }, mailbusv1.SyncState_SYNC_STATE_RETRYING, "[SERVERBUG]"},
		{"bye", func(c *imapserver.Conn) error {
			c.Bye("shutting down")
			return no(imap.ResponseCodeUnavailable)
		}, mailbusv1.SyncState_SYNC_STATE_RETRYING, "authenticate"},
		{"cut", func(c *imapserver.Conn) error {
			c.NetConn().Close()
			return no("")
		}, mailbusv1.SyncState_SYNC_STATE_RETRYING, "authenticate"},
	}
	h := &memHooks{login: func(c *imapserver.Conn, _, pass string) error {
		for _, tc := range cases {
			if tc.password == pass {
				return tc.answer(c)
			}
		}
		return nil
	}}
	e := startStore(t)
	mem := startMemHooked(t, h)
	ids := map[string]string{}
	for _, tc := range cases {
		ids[tc.password] = e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", tc.password, nil).Id
	}
	// go-imap does not end a pending AUTHENTICATE when a BYE and the end of
	// the connection come: the operation's deadline does.
	startSync(t, e, func(c *imapsync.Config) { c.Timeout = 3 * time.Second })
	for _, tc := range cases {
		t.Run(tc.password, func(t *testing.T) {
			waitFor(t, tc.state.String(), func() bool {
				st := e.account(t, ids[tc.password]).GetStatus()
				return st.GetState() == tc.state && strings.Contains(st.GetReason(), tc.reason)
			})
		})
	}
	// A retried account is never parked meanwhile: after the parked ones
	// settled, the retried ones are still retrying.
	for _, tc := range cases {
		if st := e.account(t, ids[tc.password]).GetStatus(); st.GetState() != tc.state {
			t.Errorf("%s: %v (%s), want %v", tc.password, st.GetState(), st.GetReason(), tc.state)
		}
	}
}
