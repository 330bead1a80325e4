// Package ownership decides which replica of a fetcher service (POP3
// fetcher, IMAP sync) works which account, so that at any moment at most
// one replica works an account (one POP3 session per maildrop, one IDLE
// connection per folder). It builds on NATS JetStream KV — revisions,
// compare-and-set and bucket TTLs — and adds no consensus of its own.
//
// # Data model
//
// Two KV buckets per service (names from MembersBucket and LeaseBucket):
//
//   - MAILBUS_MEMBERS_<SERVICE>: one key per live replica (key = replica
//     id, value = a small JSON heartbeat), rewritten every
//     HeartbeatInterval. The bucket's MaxAge is MemberTTL, so the key of a
//     replica that stops writing disappears MemberTTL after its last
//     heartbeat; a replica that stops gracefully deletes its key.
//   - MAILBUS_LEASES_<SERVICE>: one key per worked account (key = account
//     id, value = {"owner": replica id, "token": fencing token}). The
//     bucket's MaxAge is LeaseTTL: a lease lives LeaseTTL after its last
//     write (creation or renewal), measured by the NATS server.
//
// Both buckets keep one revision per key. Every replica of a service must
// use the same TTLs (they are bucket settings). The TTL is the bucket's
// MaxAge rather than a per-key TTL; docs/decisions/0010-account-leases.md
// says why (in short: kv.Update cannot carry a per-key TTL, and the
// machine's NATS 2.9 has none).
//
// # Assignment
//
// Each replica follows the member set (a watch on the members bucket, plus
// a re-read every HeartbeatInterval, which is how an expired heartbeat is
// noticed) and runs the accounts that rendezvous hashing (Owner) over the
// set gives it. Adding a replica moves about 1/N of the accounts, all to
// the new replica; removing one moves only its accounts. Replicas may
// briefly disagree about the member set; the leases keep that safe.
//
// # Leases
//
// Before working an account a replica takes its lease with kv.Create
// (which fails while another replica holds it) and renews it every
// RenewInterval with kv.Update on the revision it last wrote
// (compare-and-set: a refused update means the lease expired and was
// taken; the lease is lost). Release deletes the key with kv.Delete and
// LastRevision, so another replica takes the account at once.
//
// The lease's Context is cancelled at the local deadline
//
//	(time the last successful renewal was sent) + LeaseTTL - SafetyMargin
//
// measured on this process's monotonic clock, whether or not NATS answers.
// The server timestamps the renewal no earlier than it was sent, so it
// cannot expire the lease before send + LeaseTTL; the worker is told to
// stop SafetyMargin earlier, which covers the time it needs to stop and
// the clock-rate difference between the two hosts. Another replica can
// take the lease only after it expired on the server. So a replica that
// is partitioned from NATS or paused stops working before anybody else
// may start — provided its worker does stop within SafetyMargin and the
// server's clock does not jump ahead. Fencing covers what that cannot.
//
// # Fencing contract (for the store)
//
// Lease.Token is the lease bucket's epoch (the server's creation time of
// the bucket, in microseconds) plus the revision at which the lease was
// created. Revisions of a bucket only grow, and a new lease on an account
// is created only after the previous one's last write, so every later
// owner of the account has a larger token than every earlier one; a bucket
// created anew (NATS replaced, its data lost) restarts its revisions at 1
// but at a later epoch, so its tokens continue above the old bucket's
// (docs/decisions/0015-ownership-in-the-fetchers.md). A fetcher passes its token with
// every write it makes for the account (ingest, write-back acknowledgement,
// account status). The store:
//
//  1. keeps, per account and service, the largest token it has accepted
//     (in the account row, updated in the same transaction as the write);
//  2. refuses a write whose token is smaller than that (gRPC
//     FAILED_PRECONDITION, reason STALE_LEASE: the fetcher stops working
//     the account), and raises the stored token when it is larger;
//  3. may additionally call CheckToken, which reads the lease from the
//     stream leader (a direct get may be answered by a lagging replica of
//     a replicated bucket) and refuses any token that is not the current
//     lease's (it closes the gap in which the new owner has not written
//     yet), treating a NATS error as a temporary refusal, never as
//     acceptance.
//
// A new owner makes one write carrying its token (a claim) before it
// touches the upstream server, so the store knows the new token before the
// old owner's late writes can arrive. A token of 0 means "no ownership"
// (the all-in-one process with one replica) and is accepted only while the
// account has no stored token. The store implements 1, 2 and 4 (the
// lease_token field of the IngestService writes, IngestService.ClaimAccount,
// and TokenFromContext and IsStaleLease for the fetchers); 3 is not used.
//
// # Use with accountrun
//
//	m, _ := ownership.New(ctx, ownership.Config{JetStream: js, Service: "pop3fetcher"})
//	sup := m.Supervise(accountrun.Config{Accounts: ..., Protocol: ..., Work: work})
//	go m.Run(ctx)
//	sup.Run(ctx)
//
// Supervise sets Filter to "assigned to this replica", wraps Work with
// Wrap (acquire, run under the lease's context, release) and kicks the
// supervisor when the member set changes. Inside Work,
// FromContext(ctx).Token() (or TokenFromContext(ctx), 0 without a lease) is
// the fencing token to send to the store, and IsStaleLease recognises the
// store's refusal of a stale one. On shutdown the supervisor stops
// the workers, each wrapped worker releases its lease once its work has
// returned, and Run deletes the heartbeat: the others take over within
// about a second, not after the TTL.
package ownership
