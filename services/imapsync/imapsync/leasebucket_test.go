package imapsync_test

import (
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// TestLeaseBucketCreatedAnew: the store holds a token of an earlier lease
// bucket, which was deleted (NATS replaced, its JetStream data lost) and
// created anew, its revisions starting again at 1. The only replica takes
// the account's lease in the new bucket and must sync it: its token
// carries the new bucket's epoch and is larger. A late write with the old
// bucket's token is still refused.
func TestLeaseBucketCreatedAnew(t *testing.T) {
	e := startStore(t)
	srv := startMem(t)
	c := dialPlain(t, srv.addr, "alice", "secret")
	appendMsg(t, c, "INBOX", testMessage(1, "INBOX"))
	a := e.createAccount(t, srv.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
	withOwnership := func(cfg *imapsync.Config) {
		cfg.Ownership = &ownership.Config{ReplicaID: "r1"}
		cfg.HostLimit = hostlimit.Config{Rate: -1}
	}
	first := startSync(t, e, withOwnership)
	waitFor(t, "the first message synced under the first bucket", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 1 })
	old := e.leases(t)[a.Id].Token
	first.stop()
	if err := e.js.DeleteKeyValue(ctxT(t), ownership.LeaseBucket("imapsync")); err != nil {
		t.Fatal(err)
	}
	appendMsg(t, c, "INBOX", testMessage(2, "INBOX"))

	startSync(t, e, withOwnership)
	waitFor(t, "the second message synced under the new bucket's lease", func() bool { return len(e.storeFolder(t, a.Id, "INBOX")) == 2 })
	if now := e.leases(t)[a.Id]; now.Owner != "r1" || now.Token <= old {
		t.Errorf("lease now %+v, want r1's with a token above the old bucket's %d", now, old)
	}
	_, err := e.ingest.ClaimAccount(ctxT(t), &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: old})
	if !ownership.IsStaleLease(err) {
		t.Errorf("a claim with the old bucket's token %d: %v, want STALE_LEASE", old, err)
	}
}
