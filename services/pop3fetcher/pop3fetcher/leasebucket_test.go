package pop3fetcher_test

import (
	"strings"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// TestLeaseBucketCreatedAnew: the store holds a token from an earlier
// lease bucket — one whose tokens were plain revisions (before epochs), or
// one that was deleted (NATS replaced, its JetStream data lost) and
// created anew, its revisions starting again at 1. The only replica takes
// the account's lease in the new bucket and must fetch it: its token
// carries the new bucket's epoch and is larger. A late write with the old
// bucket's token is still refused.
func TestLeaseBucketCreatedAnew(t *testing.T) {
	tests := []struct {
		name string
		// before leaves the store holding a token of an earlier bucket,
		// and returns it.
		before func(t *testing.T, e *env, srv *pop3test.Server, a *mailbusv1.Account) uint64
	}{
		{name: "a revision-only token from before epochs", before: func(t *testing.T, e *env, _ *pop3test.Server, a *mailbusv1.Account) uint64 {
			if _, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: 1000}); err != nil {
				t.Fatal(err)
			}
			return 1000
		}},
		{name: "the lease bucket deleted and created anew", before: func(t *testing.T, e *env, srv *pop3test.Server, a *mailbusv1.Account) uint64 {
			f, _ := e.newFetcher(t, e.withOwnership("r1"))
			stop := runFetcher(t, f)
			waitFor(t, "the first message fetched under the first bucket", func() bool { return len(e.stored(t, a.Id)) == 1 })
			token := e.leases(t)[a.Id].Token
			stop()
			if err := e.js.DeleteKeyValue(callCtx(t), ownership.LeaseBucket("pop3fetcher")); err != nil {
				t.Fatal(err)
			}
			srv.Deliver("u", someMessages(1, 1)...)
			return token
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := startStore(t)
			srv := pop3test.NewServer(t, pop3test.WithMailbox("u", "pw", someMessages(0, 1)...))
			a := e.fakeAccount(t, srv, "u", "pw", mailbusv1.Pop3Mode_POP3_MODE_KEEP)
			old := tt.before(t, e, srv, a)

			f, reg := e.newFetcher(t, e.withOwnership("r1"))
			runFetcher(t, f)
			want := len(srv.Messages("u"))
			waitFor(t, "every message fetched under the new bucket's lease", func() bool { return len(e.stored(t, a.Id)) == want })
			e.checkStoredExactly(t, a.Id, wires(srv.Messages("u")))
			if n := metric(t, reg, "mailbus_pop3_stale_lease_stops_total"); n != 0 {
				t.Errorf("%v workers stopped on a stale token", n)
			}
			if now := e.leases(t)[a.Id]; now.Owner != "r1" || now.Token <= old {
				t.Errorf("lease now %+v, want r1's with a token above the old bucket's %d", now, old)
			}
			_, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: old})
			if !ownership.IsStaleLease(err) {
				t.Errorf("a claim with the old bucket's token %d: %v, want STALE_LEASE", old, err)
			}
		})
	}
}

// TestStoreTokenAboveCurrentLeaseIsReported: the store holds a token
// larger than the current lease bucket can give (lease_tokens from
// another deployment, or a bucket created anew by a server whose clock is
// far behind). The only replica holds the account's lease, its claim is
// refused, and it must not touch the server; it logs an error naming the
// cause and the repair, not "another replica works the account".
func TestStoreTokenAboveCurrentLeaseIsReported(t *testing.T) {
	e := startStore(t)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("u", "pw", someMessages(0, 1)...))
	a := e.fakeAccount(t, srv, "u", "pw", mailbusv1.Pop3Mode_POP3_MODE_KEEP)
	if _, err := e.ingest.ClaimAccount(callCtx(t), &mailbusv1.ClaimAccountRequest{AccountId: a.Id, LeaseToken: 1 << 62}); err != nil {
		t.Fatal(err)
	}
	f, reg := e.newFetcher(t, e.withOwnership("r1"))
	runFetcher(t, f)
	// The counter is raised before the worker reads the lease and logs
	// its finding: wait for the log line itself.
	waitFor(t, "the worker to log why it stopped on the refused claim", func() bool {
		logs := e.logs.String()
		return strings.Contains(logs, "refuses the token of this replica's current lease") || strings.Contains(logs, "another replica works the account now")
	})
	if n := metric(t, reg, "mailbus_pop3_stale_lease_stops_total"); n != 1 {
		t.Errorf("stale-lease stops: %v, want 1", n)
	}
	logs := e.logs.String()
	if !strings.Contains(logs, "refuses the token of this replica's current lease") || !strings.Contains(logs, "lease_tokens") {
		t.Errorf("no error naming the token mismatch and its repair in the log:\n%s", logs)
	}
	if strings.Contains(logs, "another replica works the account now") {
		t.Error("the mismatch was logged as a takeover by another replica")
	}
	if n := srv.TotalSessions(); n != 0 {
		t.Errorf("%d sessions with the server after the store refused the claim", n)
	}
}
