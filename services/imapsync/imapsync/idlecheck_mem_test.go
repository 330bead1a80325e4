package imapsync_test

import (
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// Only the IDLE connection goes silent (a dead peer: no RST, no data)
// while the work connection stays fine and the folder is never polled:
// the periodic DONE/NOOP round trip finds it, a new IDLE connection
// replaces it, and the mail that came meanwhile is synced.
func TestMemSilentIdleConnectionReplaced(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Hour)
	})
	fz := &freezer{}
	var (
		mu   sync.Mutex
		work net.Conn
	)
	startSync(t, e, func(c *imapsync.Config) {
		c.Timeout = time.Second
		c.IdleRestart = 300 * time.Millisecond
		c.PollInterval = time.Hour
		c.WrapConn = func(id string, nc net.Conn) net.Conn {
			mu.Lock()
			defer mu.Unlock()
			if work == nil {
				work = nc // the first connection is the work connection
				return nc
			}
			return fz.wrap(id, nc)
		}
	})
	waitFor(t, "initial sync", func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	waitFor(t, "an IDLE connection", func() bool { fz.mu.Lock(); defer fz.mu.Unlock(); return len(fz.conns) > 0 })
	time.Sleep(200 * time.Millisecond) // let the first IDLE start
	fz.freezeAll()
	appendMsg(t, tp, "INBOX", testMessage(2, "INBOX"))
	waitFor(t, "the new mail through a new IDLE connection", func() bool {
		return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil
	})
	fz.mu.Lock()
	defer fz.mu.Unlock()
	if len(fz.conns) < 1 { // freezeAll forgot the frozen ones
		t.Errorf("%d IDLE connections, want the silent one replaced", len(fz.conns))
	}
}
