package imapsync_test

import (
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/accountrun/accountruntest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// BenchmarkPickup measures how long after CreateAccount returns the new
// account's first command reaches the IMAP server (decision 0028), with
// the account list read once an hour: the announcement alone starts the
// worker. Each iteration adds one account; ms/pickup is the mean from
// CreateAccount's return, max-ms the largest, ms/from-call the mean from
// the call.
//
//	go test -run '^$' -bench BenchmarkPickup -benchtime 50x ./imapsync
func BenchmarkPickup(b *testing.B) {
	e := startStore(b)
	mem := startMem(b)
	tap := accountruntest.StartTap(b, mem.addr)
	gate := accountruntest.NewGate()
	conn := dialStore(b, e.addr, e.serviceToken, gate.DialOptions()...)
	startSync(b, e, func(c *imapsync.Config) {
		c.StoreConn = conn
		c.AccountRefresh = time.Hour
		// Every iteration's account is on the same host, which one
		// account add is not: without this the host's pacing (10 new
		// connections a second after a burst of 5) is what is measured.
		c.HostLimit = hostlimit.Config{Rate: -1}
	})
	gate.WaitWatching(b, waitLong)
	var total, worst, fromCall time.Duration
	b.ResetTimer()
	for range b.N {
		tap.Drain()
		called := time.Now()
		e.createAccount(b, tap.Addr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
		returned := time.Now()
		// The command may even arrive before the answer to CreateAccount
		// does (the announcement follows the commit): then d < 0.
		first := tap.WaitFirstCommand(b, waitLong)
		d := first.Sub(returned)
		fromCall += first.Sub(called)
		total += d
		worst = max(worst, d)
	}
	b.StopTimer()
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/pickup")
	b.ReportMetric(float64(worst.Microseconds())/1000, "max-ms")
	b.ReportMetric(float64(fromCall.Microseconds())/1000/float64(b.N), "ms/from-call")
}
