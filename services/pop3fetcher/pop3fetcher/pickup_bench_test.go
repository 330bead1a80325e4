package pop3fetcher_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/accountrun/accountruntest"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// BenchmarkPickup measures how long after CreateAccount returns the new
// account's first command reaches the POP3 server (decision 0028), with
// the account list read once an hour: the announcement alone starts the
// worker. Each iteration adds one account (each its own maildrop);
// ms/pickup is the mean from CreateAccount's return, max-ms the largest,
// ms/from-call the mean from the call.
//
//	go test -run '^$' -bench BenchmarkPickup -benchtime 50x ./pop3fetcher
func BenchmarkPickup(b *testing.B) {
	e := startStore(b)
	var opts []pop3test.Option
	for i := range b.N {
		opts = append(opts, pop3test.WithMailbox("user"+strconv.Itoa(i), "secret"))
	}
	srv := pop3test.NewServer(b, opts...)
	tap := accountruntest.StartTap(b, srv.Addr())
	gate := accountruntest.NewGate()
	conn := e.dial(b, e.serviceToken, gate.DialOptions()...)
	f, _ := e.newFetcher(b, func(c *pop3fetcher.Config) {
		c.Conn = conn
		c.Refresh = time.Hour
		// Every iteration's account is on the same host, which one
		// account add is not: without this the host's pacing (10 new
		// connections a second after a burst of 5) is what is measured.
		c.HostLimit = hostlimit.Config{Rate: -1}
		c.Logger = nil
	})
	runFetcher(b, f)
	gate.WaitWatching(b, waitLong)
	host, port, _ := net.SplitHostPort(tap.Addr())
	n, _ := strconv.Atoi(port)
	var total, worst, fromCall time.Duration
	b.ResetTimer()
	for i := range b.N {
		tap.Drain()
		called := time.Now()
		e.createAccount(b, account{name: "bench" + strconv.Itoa(i), host: host, port: n, user: "user" + strconv.Itoa(i), secret: "secret", interval: time.Hour})
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
