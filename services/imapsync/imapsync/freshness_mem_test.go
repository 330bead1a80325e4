package imapsync_test

import (
	"bufio"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// noPushProxy forwards IMAP between clients and a server but drops every
// untagged response the server sends while a client's IDLE runs (from
// the continuation to the tagged answer after DONE): a server that
// advertises IDLE and never pushes. The server counts what it dropped as
// told, so a NOOP after DONE does not tell it again either.
type noPushProxy struct {
	addr    string
	idles   atomic.Int64 // IDLE commands seen
	dropped atomic.Int64 // untagged responses dropped
}

var idleCommand = regexp.MustCompile(`(?i)^(\S+) IDLE\r\n$`)

func startNoPushProxy(t testing.TB, upstream string) *noPushProxy {
	t.Helper()
	return startIdleProxy(t, upstream, true)
}

// startIdleProxy is startNoPushProxy that drops the pushes only when
// dropPushes is set; without, it only counts the IDLE commands.
func startIdleProxy(t testing.TB, upstream string, dropPushes bool) *noPushProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &noPushProxy{addr: lis.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { lis.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", upstream)
			if err != nil {
				client.Close()
				continue
			}
			// idleTag is the tag of the client's IDLE command in
			// progress ("" when none).
			var (
				mu      sync.Mutex
				idleTag string
			)
			wg.Add(2)
			go func() {
				defer wg.Done()
				defer server.Close()
				r := bufio.NewReader(client)
				for {
					line, err := r.ReadString('\n')
					if m := idleCommand.FindStringSubmatch(line); m != nil {
						p.idles.Add(1)
						mu.Lock()
						idleTag = m[1]
						mu.Unlock()
					}
					if _, werr := server.Write([]byte(line)); werr != nil || err != nil {
						return
					}
				}
			}()
			go func() {
				defer wg.Done()
				defer client.Close()
				r := bufio.NewReader(server)
				for {
					line, err := r.ReadString('\n')
					mu.Lock()
					tag := idleTag
					drop := dropPushes && tag != "" && strings.HasPrefix(line, "* ") && !strings.HasPrefix(line, "* BYE")
					if tag != "" && strings.HasPrefix(line, tag+" ") {
						idleTag = ""
					}
					mu.Unlock()
					if drop {
						p.dropped.Add(1)
					} else if _, werr := client.Write([]byte(line)); werr != nil {
						return
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return p
}

// TestMemIdleNeverPushes: on a server that advertises IDLE but whose IDLE
// never carries an update, new mail in the IDLEd INBOX is seen within the
// account's poll interval (1 s here), though IDLE is re-issued only every
// hour; after noPushAfter such checks the server is found out, once, and
// INBOX is polled from then on.
func TestMemIdleNeverPushes(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
	proxy := startNoPushProxy(t, mem.addr)
	a := e.createAccount(t, proxy.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Second)
	})
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.IdleRestart = time.Hour
		c.Registry = reg
	})
	inSync := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	}
	inSync("initial sync")
	waitFor(t, "INBOX IDLEd", func() bool { return proxy.idles.Load() > 0 })

	// Each message is seen by a check, never by IDLE, until the server is
	// found out; then by the poll.
	next := 2
	for metricValue(t, reg, "mailbus_imapsync_idle_no_push_total") == 0 {
		if next > 20 {
			t.Fatalf("the server whose IDLE never pushes not found out after %d messages", next-2)
		}
		appendMsg(t, tp, "INBOX", testMessage(next, "INBOX"))
		next++
		inSync("new mail in the IDLEd INBOX, by the check after a silent poll interval")
	}
	if proxy.dropped.Load() == 0 {
		t.Error("the proxy dropped no push: the test did not test a silent IDLE")
	}
	idles := proxy.idles.Load()
	for range 2 {
		appendMsg(t, tp, "INBOX", testMessage(next, "INBOX"))
		next++
		inSync("new mail in INBOX, polled")
	}
	if n := metricValue(t, reg, "mailbus_imapsync_idle_no_push_total"); n != 1 {
		t.Errorf("found out %v times, want once", n)
	}
	if n := proxy.idles.Load(); n > idles+1 { // one may have been under way
		t.Errorf("%d IDLE commands after the server was found out", n-idles)
	}
	fresh := gaugeValues(t, reg, "mailbus_imapsync_freshness_seconds")
	if _, ok := fresh[a.Id]; !ok || len(fresh) != 1 {
		t.Errorf("freshness series %v, want one for account %s", fresh, a.Id)
	}
	if oldest := gaugeValues(t, reg, "mailbus_imapsync_freshness_max_seconds")[""]; oldest < fresh[a.Id] {
		t.Errorf("freshness max %v below the account's %v", oldest, fresh[a.Id])
	}
}

// TestMemIdlePushesNotFoundOut: on a server whose IDLE pushes, the checks
// after silent poll intervals never take it for one that does not: new
// mail arrives by IDLE and the count stays 0.
func TestMemIdlePushesNotFoundOut(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Second)
	})
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) {
		c.IdleRestart = time.Hour
		c.Registry = reg
	})
	for i := range 6 {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
		waitFor(t, "new mail", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == i+1 })
	}
	if n := metricValue(t, reg, "mailbus_imapsync_idle_no_push_total"); n != 0 {
		t.Errorf("a pushing server found out %v times as one whose IDLE does not push", n)
	}
}

// gaugeValues returns a gauge's values by the value of its first label
// ("" without labels).
func gaugeValues(t testing.TB, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			if len(m.GetLabel()) > 0 {
				key = m.GetLabel()[0].GetValue()
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

// counterValues is gaugeValues for a counter.
func counterValues(t testing.TB, reg *prometheus.Registry, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			key := ""
			if len(m.GetLabel()) > 0 {
				key = m.GetLabel()[0].GetValue()
			}
			out[key] = m.GetCounter().GetValue()
		}
	}
	return out
}

// TestMemOneConnectionIdleNeverPushes: with Connections = 1 INBOX is IDLEd
// on the work connection; on a server whose IDLE never pushes, new mail
// in INBOX is still seen within the account's poll interval (the poll
// ends that IDLE and checks INBOX too), though IDLE is re-issued only
// every hour and write-backs are looked for every hour: the poll is the
// only thing that wakes the work connection. It fails (times out) when
// this mode stops waking up for the poll (checked by giving it an hour's
// poll ticker), and when the proxy dropped no push (the mail could have
// come by IDLE). It does not tell the poll's own check of INBOX from the
// SELECT that starts the next IDLE: either sees the mail (decision 22).
func TestMemOneConnectionIdleNeverPushes(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	tp := dialPlain(t, mem.addr, "alice", "secret")
	appendMsg(t, tp, "INBOX", testMessage(1, "INBOX"))
	proxy := startNoPushProxy(t, mem.addr)
	a := e.createAccount(t, proxy.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(time.Second)
	})
	startSync(t, e, func(c *imapsync.Config) {
		c.Connections = 1
		c.IdleRestart = time.Hour
		c.WriteBackPoll = time.Hour
	})
	inSync := func(what string) {
		t.Helper()
		waitFor(t, what, func() bool { return sameView(serverFolder(t, tp, "INBOX"), e.storeFolder(t, a.Id, "INBOX")) == nil })
	}
	inSync("initial sync")
	waitFor(t, "INBOX IDLEd on the work connection", func() bool { return proxy.idles.Load() > 0 })
	for i := 2; i <= 4; i++ {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
		inSync("new mail in INBOX, IDLEd on the work connection")
	}
	if proxy.dropped.Load() == 0 {
		t.Error("the proxy dropped no push: the test did not test a silent IDLE")
	}
}

// TestMemParkedAccountHasNoFreshness: an account parked (a wrong password)
// is not expected to be fresh, so it has no
// mailbus_imapsync_freshness_seconds series and does not raise
// mailbus_imapsync_freshness_max_seconds, while an account worked next to
// it keeps its series. The parked account's age grew until its worker
// ended, so every parked account raised the alert on the max.
func TestMemParkedAccountHasNoFreshness(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	good := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	bad := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "wrong", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.Registry = reg })
	// The worker leaves the freshness metrics before it reports PARKED.
	waitFor(t, "the account with the wrong password parked", func() bool {
		return e.account(t, bad.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
	})
	// One gather, so that the max and the series are of the same moment.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	fresh, oldest := map[string]float64{}, -1.0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetName() {
			case "mailbus_imapsync_freshness_seconds":
				fresh[m.GetLabel()[0].GetValue()] = m.GetGauge().GetValue()
			case "mailbus_imapsync_freshness_max_seconds":
				oldest = m.GetGauge().GetValue()
			}
		}
	}
	if _, ok := fresh[bad.Id]; ok {
		t.Errorf("the parked account %s has a freshness series (%v s)", bad.Id, fresh[bad.Id])
	}
	if _, ok := fresh[good.Id]; !ok {
		t.Errorf("the working account %s has no freshness series (series %v)", good.Id, fresh)
	}
	if oldest != fresh[good.Id] {
		t.Errorf("freshness max %v s, want the working account's %v s (series %v)", oldest, fresh[good.Id], fresh)
	}
}
