package imapsync_test

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestDovecotIdleNeverPushes: Dovecot behind a proxy that drops what its
// IDLE pushes. New mail in the IDLEd INBOX is seen within the account's
// poll interval (1 s), though IDLE is re-issued only every hour, with
// CONDSTORE (the check is a STATUS) and without (the check is a sync);
// the server is found out once, and INBOX polled from then on.
func TestDovecotIdleNeverPushes(t *testing.T) {
	t.Run("condstore", func(t *testing.T) { testIdleNeverPushes(t, nil) })
	t.Run("fallback", func(t *testing.T) { testIdleNeverPushes(t, []string{"CONDSTORE", "QRESYNC"}) })
}

func testIdleNeverPushes(t *testing.T, hide []string) {
	s := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}, HideCapabilities: hide})
	e := startStore(t)
	deliver(t, s, "INBOX", 2)
	proxy := startNoPushProxy(t, s.IMAPAddr())
	a := e.createAccount(t, proxy.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Second)
	})
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.IdleRestart = time.Hour
		c.Registry = reg
	})
	tp := dialDovecot(t, s)
	inSync := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	}
	inSync("initial sync")
	waitFor(t, "INBOX IDLEd", func() bool { return proxy.idles.Load() > 0 })
	next := 10
	for metricValue(t, reg, "mailbus_imapsync_idle_no_push_total") == 0 {
		if next > 30 {
			t.Fatalf("the server whose IDLE never pushes not found out after %d messages", next-10)
		}
		appendMsg(t, tp, "INBOX", testMessage(next, "INBOX"))
		next++
		inSync("new mail in the IDLEd INBOX, by the check after a silent poll interval")
	}
	if proxy.dropped.Load() == 0 {
		t.Error("the proxy dropped no push: the test did not test a silent IDLE")
	}
	appendMsg(t, tp, "INBOX", testMessage(next, "INBOX"))
	inSync("new mail in INBOX, polled")
	if n := metricValue(t, reg, "mailbus_imapsync_idle_no_push_total"); n != 1 {
		t.Errorf("found out %v times, want once", n)
	}
}

// TestDovecotPolledFolderChangesTwice: a polled folder (not IDLEd) gets
// new mail three times in a row while nothing else changes, each seen.
// The sync of the first leaves the folder selected on the work
// connection, and Dovecot answers STATUS on the selected mailbox from the
// session's view, which moves only when the session syncs it (the poll's
// LIST does; checkFolder selects the folder again instead of trusting
// STATUS).
func TestDovecotPolledFolderChangesTwice(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	deliver(t, s, "INBOX", 1)
	deliver(t, s, "Archive", 1)
	a := e.createAccount(t, s.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Second)
	})
	startSync(t, e, withRoots(s))
	tp := dialDovecot(t, s)
	for i := range 3 {
		appendMsg(t, tp, "Archive", testMessage(10+i, "Archive"))
		waitFor(t, "new mail in the polled folder", func() bool {
			return sameView(serverFolder(t, tp, "Archive"), e.storeFolder(t, a.Id, "Archive")) == nil
		})
	}
}

// TestDovecotLargeMessageNotTakenForNoPush: the IDLEd INBOX and a polled
// folder each hold a message above MaxMessageSize, left on the server
// and not in the store. The STATUS check of INBOX after a silent poll
// interval counts the server's messages against the store's and those
// left on the server, as the sync does; counted against the store's
// alone, every check found "new mail" that IDLE had not carried, synced
// the folder again, and after noPushAfter checks took Dovecot, whose IDLE
// pushes, for a server whose IDLE never does and stopped IDLEing.
func TestDovecotLargeMessageNotTakenForNoPush(t *testing.T) {
	s := startDovecot(t)
	e := startStore(t)
	for _, folder := range []string{"INBOX", "Archive"} {
		deliver(t, s, folder, 1)
		large := append(testMessage(100, folder), strings.Repeat("large body line\r\n", 8<<10)...)
		if err := s.Deliver("alice", folder, large); err != nil {
			t.Fatal(err)
		}
	}
	proxy := startIdleProxy(t, s.IMAPAddr(), false)
	a := e.createAccount(t, proxy.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Second)
	})
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.IdleRestart = time.Hour
		c.MaxMessageSize = 64 << 10
		c.Registry = reg
	})
	waitFor(t, "the small messages synced", func() bool {
		return len(e.storeFolder(t, a.Id, "INBOX")) == 1 && len(e.storeFolder(t, a.Id, "Archive")) == 1
	})
	// Each silent poll interval ends INBOX's IDLE, has INBOX checked and
	// IDLEs again: six IDLE commands are five checks, more than
	// noPushAfter. A server taken for one that does not push is IDLEd
	// no more.
	waitFor(t, "IDLE issued again after silent poll intervals", func() bool {
		return proxy.idles.Load() >= 6 || metricValue(t, reg, "mailbus_imapsync_idle_no_push_total") > 0
	})
	if n := metricValue(t, reg, "mailbus_imapsync_idle_no_push_total"); n != 0 {
		t.Errorf("Dovecot, whose IDLE pushes, taken %v times for a server whose IDLE never pushes", n)
	}
}
