package imapsync_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemInitialSyncSecondConnection: an initial sync of several folders
// and enough messages fetches folders on a second connection only where
// both budgets allow it: the host's (hostlimit.Config.MaxConns) and the account's
// (Config.Connections). The server never sees more connections than the
// host's budget, and every message is stored once, whichever connection
// fetched it.
func TestMemInitialSyncSecondConnection(t *testing.T) {
	folders := []string{"INBOX", "Archive", "Sent", "Lists"}
	const perFolder = 150 // 600 in all: enough for a second connection (prefetchMinMessages)
	cases := []struct {
		name           string
		maxConns       int // 0: no host budget
		connections    int // 0: the default (3)
		wantPrefetch   bool
		wantPeakAtMost int
	}{
		{"host budget 2", 2, 0, true, 2},
		{"host budget 1", 1, 0, false, 1},
		{"one connection per account", 0, 1, false, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStore(t)
			addr, lis := startCountedMem(t)
			c := dialPlain(t, addr, "alice", "secret")
			for _, f := range folders {
				if f != "INBOX" {
					if err := c.Create(f, nil).Wait(); err != nil {
						t.Fatal(err)
					}
				}
				for i := range perFolder {
					appendMsg(t, c, f, testMessage(i, f))
				}
			}
			if err := c.Logout().Wait(); err != nil {
				t.Fatal(err)
			}
			c.Close()
			waitFor(t, "the test's connection closed", func() bool { return lis.open() == 0 })
			a := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
			reg := prometheus.NewRegistry()
			startSync(t, e, func(c *imapsync.Config) {
				c.Registry = reg
				c.FetchBatch = 50
				c.HostLimit = hostlimit.Config{Rate: -1, MaxConns: tc.maxConns}
				if tc.connections != 0 {
					c.Connections = tc.connections
				}
			})
			waitFor(t, "the initial sync done", func() bool { return gaugeValues(t, reg, "mailbus_imapsync_accounts")["idle"] == 1 })
			for _, f := range folders {
				if n := len(e.storeFolder(t, a.Id, f)); n != perFolder {
					t.Errorf("%s: %d messages stored, want %d", f, n, perFolder)
				}
			}
			if n := counterValue(t, reg, "mailbus_imapsync_messages_total"); n != float64(len(folders)*perFolder) {
				t.Errorf("%v messages fetched, want each of the %d once", n, len(folders)*perFolder)
			}
			prefetched := counterValue(t, reg, "mailbus_imapsync_prefetched_folders_total")
			if tc.wantPrefetch != (prefetched > 0) {
				t.Errorf("%v folders fetched on a second connection; want some: %v", prefetched, tc.wantPrefetch)
			}
			if peak := lis.maxConcurrent(); peak > tc.wantPeakAtMost {
				t.Errorf("the server saw %d connections at once, the budget is %d", peak, tc.wantPeakAtMost)
			}
		})
	}
}

// counterValue sums a counter's series.
func counterValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
