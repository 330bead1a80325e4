package imapsync_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestMemEndedWorkerLeavesNoMetrics: once the worker of a deleted account
// has ended, the account counts in no state of mailbus_imapsync_accounts
// (nor has a freshness series). The gauge kept the state the worker last
// reported, so that every deleted account, and every update (its worker
// is replaced by one of the new generation), added an account for good.
func TestMemEndedWorkerLeavesNoMetrics(t *testing.T) {
	e := startStore(t)
	mem := startMem(t)
	a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	reg := prometheus.NewRegistry()
	startSync(t, e, func(c *imapsync.Config) { c.Registry = reg })
	accounts := func() map[string]float64 { return gaugeValues(t, reg, "mailbus_imapsync_accounts") }
	waitFor(t, "the account counted idle", func() bool { return accounts()["idle"] == 1 })
	if _, err := e.accounts.DeleteAccount(ctxT(t), &mailbusv1.DeleteAccountRequest{AccountId: a.Id}); err != nil {
		t.Fatal(err)
	}
	// The worker takes its freshness series away as it ends, after it
	// has taken its state out of the gauge.
	waitFor(t, "the worker ended (its freshness series gone)", func() bool {
		return len(gaugeValues(t, reg, "mailbus_imapsync_freshness_seconds")) == 0
	})
	for state, n := range accounts() {
		if n != 0 {
			t.Errorf("mailbus_imapsync_accounts{state=%q} = %v after the account's worker ended, want 0", state, n)
		}
	}
}
