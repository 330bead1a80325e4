package imapsync_test

import (
	"fmt"
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestIdleConnectionsYieldToWorkConnections: with a per-host budget, the
// first account on a host opens its work connection and an IDLE
// connection on INBOX. A second account's work connection must not wait
// for them forever: the IDLE connection is optional (STATUS polling
// covers its folder) and gives its slot up. Both accounts then sync a new
// message, whether their INBOX is IDLEd or polled.
func TestIdleConnectionsYieldToWorkConnections(t *testing.T) {
	for _, budget := range []int{2, 3} {
		t.Run(fmt.Sprint("budget ", budget), func(t *testing.T) {
			e := startStore(t)
			addr, lis := startCountedMem(t)
			c := dialPlain(t, addr, "alice", "secret")
			appendMsg(t, c, "INBOX", testMessage(1, "INBOX"))
			a := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
			startSync(t, e, func(c *imapsync.Config) { c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: budget} })
			waitFor(t, "the first account synced", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 1 })
			waitFor(t, "the first account's IDLE connection up", func() bool { return lis.open() == 3 }) // the test's, work, IDLE
			b := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) { a.Name = "second" })
			waitFor(t, "the second account synced", func() bool { return len(e.storeFolder(t, b.Id, "INBOX")) == 1 })
			appendMsg(t, c, "INBOX", testMessage(2, "INBOX"))
			for _, acct := range []*mailbusv1.Account{a, b} {
				waitFor(t, "the new message synced to "+acct.Name, func() bool { return len(e.storeFolder(t, acct.Id, "INBOX")) == 2 })
			}
		})
	}
}

// TestWorkConnectionWaitingForSlotIsReported: with a budget of one
// connection per host, one of two accounts of the host holds the only
// slot with its work connection; the other's status says it waits for a
// connection slot to the host.
func TestWorkConnectionWaitingForSlotIsReported(t *testing.T) {
	e := startStore(t)
	srv := startMem(t)
	c := dialPlain(t, srv.addr, "alice", "secret")
	appendMsg(t, c, "INBOX", testMessage(1, "INBOX"))
	c.Logout()
	accounts := []*mailbusv1.Account{
		e.createAccount(t, srv.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil),
		e.createAccount(t, srv.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) { a.Name = "second" }),
	}
	startSync(t, e, func(c *imapsync.Config) { c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: 1} })
	host := strings.Split(srv.addr, ":")[0]
	waitFor(t, "one account synced, the other waiting for a slot", func() bool {
		synced, waiting := 0, 0
		for _, a := range accounts {
			if len(e.storeFolder(t, a.Id, "INBOX")) == 1 {
				synced++
			} else if strings.Contains(e.account(t, a.Id).GetStatus().GetReason(), "waiting for a connection slot to "+host) {
				waiting++
			}
		}
		return synced == 1 && waiting == 1
	})
}

// open is the number of connections the server has open now.
func (l *countingListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.active
}
