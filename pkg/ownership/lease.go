package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/mailbus/mailbus/pkg/backoff"
)

// leaseValue is what a lease key holds.
type leaseValue struct {
	// Owner is the replica id.
	Owner string `json:"owner"`
	// Token is the fencing token: Epoch plus the revision the lease was
	// created at. The creating write cannot know its own revision, so it
	// is 0 there and set by every renewal.
	Token uint64 `json:"token,omitempty"`
	// Epoch is the lease bucket's epoch (bucketEpoch) the token is based
	// on, written by the creating write.
	Epoch uint64 `json:"epoch,omitempty"`
	// Nonce identifies the creating attempt, so that a create whose answer
	// was lost (a cancelled or timed-out request) can be recognised and
	// undone.
	Nonce string `json:"nonce,omitempty"`
}

// Lease is one replica's hold on one account. Its Context is cancelled
// when the lease is lost or released; work done for the account must stop
// when it is.
type Lease struct {
	m       *Manager
	account string
	token   uint64
	ctx     context.Context
	cancel  context.CancelCauseFunc

	mu       sync.Mutex
	rev      uint64
	deadline time.Time // local, monotonic: last renewal sent + TTL - margin
	timer    *time.Timer
	err      error // why the lease ended; nil while held
	released bool

	stopOnce  sync.Once
	stopRenew chan struct{}
	renewDone chan struct{}
}

type leaseKey struct{}

// FromContext returns the lease whose Context ctx is (or derives from),
// or nil: a worker run by Wrap finds there the fencing token to send with
// its writes to the store.
func FromContext(ctx context.Context) *Lease {
	l, _ := ctx.Value(leaseKey{}).(*Lease)
	return l
}

// Account returns the account id.
func (l *Lease) Account() string { return l.account }

// Token returns the fencing token: the lease bucket's epoch (the server's
// creation time of the bucket, in microseconds) plus the bucket's revision
// at which this replica took the lease. A later owner's token is always
// larger — revisions of a bucket only grow, and a bucket created anew
// (NATS replaced, its data lost) starts at a later epoch — so a store
// that remembers the largest token it has seen for an account can refuse
// the writes of a stale owner. See the package documentation for the
// contract.
func (l *Lease) Token() uint64 { return l.token }

// Revision returns the lease key's current revision (it moves on with
// every renewal; Token does not).
func (l *Lease) Revision() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rev
}

// Context is cancelled when the lease ends: lost (cause wraps ErrLost),
// released (ErrReleased), or when the context given to Acquire ends.
func (l *Lease) Context() context.Context { return l.ctx }

// Deadline returns the local time at which the lease's context will be
// cancelled unless a renewal succeeds first.
func (l *Lease) Deadline() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.deadline
}

// Err returns why the lease ended (wrapping ErrLost or ErrReleased), or nil
// while it is held.
func (l *Lease) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// TryAcquire takes the account's lease if nobody holds it (kv.Create),
// and returns ErrHeld if another replica does. The lease is renewed in the
// background until Release or loss; its Context ends with ctx too. If ctx
// ends while the create is in flight, the create is let finish and a
// lease it took is given back at once, and ctx's error is returned.
func (m *Manager) TryAcquire(ctx context.Context, account string) (*Lease, error) {
	if !keyRE.MatchString(account) {
		return nil, fmt.Errorf("ownership: account id %q is not a valid key", account)
	}
	if m.isDead() {
		return nil, ErrStopped
	}
	nonce := nuid.Next()
	epoch := m.epoch.Load()
	val, _ := json.Marshal(leaseValue{Owner: m.cfg.ReplicaID, Nonce: nonce, Epoch: epoch})
	sent := time.Now()
	// The create is not cancelled with ctx: a request cancelled after it
	// left may still be applied, and the lease would then be held by
	// nobody until the TTL. It is bounded by the lease window instead
	// (a lease created later than that would be born expired).
	cctx, cancelCreate := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.LeaseTTL-m.cfg.SafetyMargin)
	rev, err := m.leases.Create(cctx, account, val)
	cancelCreate()
	if err != nil {
		if isConflict(err) {
			return nil, ErrHeld
		}
		// A timeout leaves the outcome unknown: undo the create if it was
		// applied (best effort; otherwise the key expires after the TTL).
		m.undoCreate(account, nonce)
		return nil, fmt.Errorf("ownership: acquire %s: %w", account, err)
	}
	giveBack := func() {
		dctx, cancelDelete := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		m.leases.Delete(dctx, account, jetstream.LastRevision(rev))
		cancelDelete()
	}
	// The epoch read before the create must still be the bucket's: then
	// the create was applied in that very bucket, and epoch + rev is
	// larger than every token of an earlier bucket. Otherwise the bucket
	// was created anew meanwhile; the lease is given back and the next
	// attempt uses the new epoch.
	ectx, cancelEpoch := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.LeaseTTL-m.cfg.SafetyMargin)
	now, err := bucketEpoch(ectx, m.cfg.JetStream, LeaseBucket(m.cfg.Service))
	cancelEpoch()
	if err != nil || now != epoch {
		giveBack()
		if err != nil {
			return nil, fmt.Errorf("ownership: acquire %s: %w", account, err)
		}
		m.epoch.Store(now)
		m.log.Warn("the lease bucket was created anew; leases now use its epoch", "epoch", now, "was", epoch)
		return nil, fmt.Errorf("ownership: acquire %s: the lease bucket was created anew (epoch %d, was %d); retrying", account, now, epoch)
	}
	if ctx.Err() != nil { // the caller gave up meanwhile: hand it back at once
		giveBack()
		return nil, ctx.Err()
	}
	lctx, cancel := context.WithCancelCause(ctx)
	l := &Lease{
		m:         m,
		account:   account,
		token:     epoch + rev,
		ctx:       lctx,
		cancel:    cancel,
		rev:       rev,
		deadline:  sent.Add(m.cfg.LeaseTTL - m.cfg.SafetyMargin),
		stopRenew: make(chan struct{}),
		renewDone: make(chan struct{}),
	}
	l.ctx = context.WithValue(lctx, leaseKey{}, l)
	l.mu.Lock()
	l.timer = time.AfterFunc(time.Until(l.deadline), l.expire)
	l.mu.Unlock()
	m.mu.Lock()
	if m.dead { // killed while creating: behave as a dead process would
		m.mu.Unlock()
		close(l.renewDone)
		return l, nil
	}
	m.held[account] = l
	m.metrics.held.Set(float64(len(m.held)))
	m.mu.Unlock()
	m.metrics.acquired.Inc()
	go l.renewLoop()
	m.log.Debug("lease acquired", "account", account, "token", l.token)
	return l, nil
}

// Acquire takes the account's lease, waiting while another replica holds
// it: it tries again as soon as the lease bucket shows a release, and
// every RetryInterval (an expiry shows no event). It returns ctx's error
// when ctx ends first.
func (m *Manager) Acquire(ctx context.Context, account string) (*Lease, error) {
	m.mu.Lock()
	ch := m.waiters[account]
	if ch == nil {
		ch = make(chan struct{}, 1)
		m.waiters[account] = ch
	}
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.waiters[account] == ch {
			delete(m.waiters, account)
		}
		m.mu.Unlock()
	}()
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: 10 * time.Second}
	for {
		if m.isDead() {
			<-ctx.Done()
			return nil, ctx.Err()
		}
		l, err := m.TryAcquire(ctx, account)
		if err == nil {
			return l, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := m.cfg.RetryInterval
		if !errors.Is(err, ErrHeld) {
			wait = bo.Next()
			m.log.Warn("cannot take lease; retrying", "account", account, "err", err)
		}
		t := time.NewTimer(backoff.Jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-ch:
		case <-t.C:
		}
		t.Stop()
	}
}

// Renew renews the lease once: kv.Update on the current revision
// (compare-and-set). A refused update (the revision moved on: the lease
// expired and another replica took it) loses the lease and returns an
// error wrapping ErrLost and jetstream.ErrKeyRevisionMismatch. Another
// error (NATS unreachable) is returned as is; the lease then lives until
// its deadline. A renewal after the lease ended never revives it. The
// background renewal calls this; it is exported for tests and tools.
func (l *Lease) Renew(ctx context.Context) error {
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return ErrReleased
	}
	rev := l.rev
	l.mu.Unlock()
	val, _ := json.Marshal(leaseValue{Owner: l.m.cfg.ReplicaID, Token: l.token})
	sent := time.Now()
	newRev, err := l.m.leases.Update(ctx, l.account, val, rev)
	if err != nil {
		if isConflict(err) || errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			if cur, ok := l.currentIfOurs(ctx); ok && cur != rev {
				// An earlier renewal of this lease was applied but its
				// answer lost: the lease is still ours. Take up its
				// revision; the deadline moves with the next renewal.
				l.mu.Lock()
				l.rev = max(l.rev, cur)
				l.mu.Unlock()
				return fmt.Errorf("ownership: renew %s: an earlier renewal was applied unseen (revision %d): %w", l.account, cur, err)
			}
			err = fmt.Errorf("%w: %s: renewal refused: %w", ErrLost, l.account, err)
			l.end(err)
			return err
		}
		return fmt.Errorf("ownership: renew %s: %w", l.account, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		// Lost by the deadline meanwhile: the worker has been told to stop
		// and stays stopped; Release deletes the key.
		l.rev = newRev
		return l.err
	}
	l.rev = newRev
	l.deadline = sent.Add(l.m.cfg.LeaseTTL - l.m.cfg.SafetyMargin)
	l.timer.Reset(time.Until(l.deadline))
	return nil
}

// expire runs when the local deadline passes without a renewal.
func (l *Lease) expire() {
	l.mu.Lock()
	if l.err != nil || time.Now().Before(l.deadline) { // ended, or a renewal moved the deadline
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	l.end(fmt.Errorf("%w: %s: no renewal before the local deadline", ErrLost, l.account))
}

// end records why the lease ended and cancels its context.
func (l *Lease) end(err error) {
	l.mu.Lock()
	first := l.err == nil
	if first {
		l.err = err
	}
	err = l.err
	l.mu.Unlock()
	l.cancel(err)
	if first && errors.Is(err, ErrLost) {
		l.m.metrics.lost.Inc()
		l.m.log.Warn("lease lost", "account", l.account, "token", l.token, "err", err)
	}
}

func (l *Lease) renewLoop() {
	defer close(l.renewDone)
	interval := l.m.cfg.RenewInterval
	bo := backoff.Backoff{Min: max(interval/10, 10*time.Millisecond), Max: interval / 2}
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stopRenew:
			return
		case <-t.C:
		}
		// Waiting past the deadline is pointless: the lease is lost then.
		ctx, cancel := context.WithDeadline(context.Background(), l.Deadline())
		err := l.Renew(ctx)
		cancel()
		if l.Err() != nil {
			return
		}
		if err != nil {
			l.m.log.Warn("cannot renew lease; retrying until its deadline", "account", l.account, "deadline", time.Until(l.Deadline()), "err", err)
			t.Reset(bo.Next())
			continue
		}
		bo.Reset()
		t.Reset(interval)
	}
}

// stopRenewing stops the background renewal and waits for it; the lease
// is not released (a pause or a crash, in tests; a step of Release).
func (l *Lease) stopRenewing() {
	l.stopOnce.Do(func() { close(l.stopRenew) })
	<-l.renewDone
}

// Release ends the lease: it stops renewing, cancels the context and
// deletes the key if it still holds the lease's revision (kv.Delete with
// LastRevision), so that another replica can take the account at once
// rather than after the TTL. Call it only once the work done under the
// lease has stopped. Releasing a lost lease is harmless: the conditional
// delete then fails and is ignored.
func (l *Lease) Release(ctx context.Context) error {
	l.stopRenewing()
	l.mu.Lock()
	if l.released {
		l.mu.Unlock()
		return nil
	}
	l.released = true
	l.timer.Stop()
	rev := l.rev
	wasHeld := l.err == nil
	l.mu.Unlock()
	l.end(ErrReleased)
	m := l.m
	m.mu.Lock()
	if m.held[l.account] == l {
		delete(m.held, l.account)
		m.metrics.held.Set(float64(len(m.held)))
	}
	dead := m.dead
	m.mu.Unlock()
	if wasHeld {
		m.metrics.released.Inc()
	}
	if dead {
		return nil // a crashed process releases nothing
	}
	err := m.leases.Delete(ctx, l.account, jetstream.LastRevision(rev))
	if err != nil && isConflict(err) {
		// Ours at another revision (a renewal applied unseen)? Then
		// delete that; otherwise another replica holds it: leave it.
		err = nil
		if cur, ok := l.currentIfOurs(ctx); ok && cur != rev {
			err = m.leases.Delete(ctx, l.account, jetstream.LastRevision(cur))
			if isConflict(err) {
				err = nil
			}
		}
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("ownership: release %s: %w", l.account, err)
	}
	m.log.Debug("lease released", "account", l.account, "token", l.token)
	return nil
}

// Current reports whether the account's lease key still holds this lease,
// read from the stream leader. A worker whose write the store refused as
// stale (STALE_LEASE) while its lease is current is not a stale owner:
// the store holds a token larger than any of this lease bucket's (see
// TokenMismatchHelp), and no replica can work the account until that is
// mended.
func (l *Lease) Current(ctx context.Context) bool {
	_, ok := l.currentIfOurs(ctx)
	return ok
}

// TokenMismatchHelp explains, for an operator's log, a STALE_LEASE refusal
// of a lease that is current (Lease.Current).
const TokenMismatchHelp = "the store holds a larger lease token for this account than the current lease of the lease bucket: " +
	"the bucket was created anew by a NATS server whose clock is behind the previous one's, or the store's lease_tokens come from another deployment. " +
	"No replica can work the account until the account's row in lease_tokens is deleted (first make sure no replica of the old deployment still runs) and this replica is restarted"

// currentIfOurs reads the lease key (from the leader) and returns its
// revision if it still belongs to this lease (written by this replica
// with this token).
func (l *Lease) currentIfOurs(ctx context.Context) (uint64, bool) {
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
	}
	v, rev, err := readLease(ctx, l.m.cfg.JetStream, LeaseBucket(l.m.cfg.Service), l.account)
	if err != nil || v.Owner != l.m.cfg.ReplicaID {
		return 0, false
	}
	if v.Token == l.token || (v.Token == 0 && v.Epoch+rev == l.token) {
		return rev, true
	}
	return 0, false
}

// undoCreate deletes the account's lease key if it holds the create
// attempt nonce: a create that was applied although its caller saw an
// error. Best effort: otherwise the key expires after the TTL.
func (m *Manager) undoCreate(account, nonce string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, rev, err := readLease(ctx, m.cfg.JetStream, LeaseBucket(m.cfg.Service), account)
	if err != nil || v.Owner != m.cfg.ReplicaID || v.Nonce != nonce || v.Token != 0 {
		return
	}
	if err := m.leases.Delete(ctx, account, jetstream.LastRevision(rev)); err == nil {
		m.log.Debug("undid a lease created unseen", "account", account, "revision", rev)
	}
}

// isConflict reports a failed compare-and-set: the key exists (Create) or
// its revision moved on (Update, Delete with LastRevision). Replicated
// buckets report code 10164 where single-replica ones report 10071.
func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// CheckToken is the store's side of fencing, for a store that can reach
// NATS: it returns nil if token is the fencing token of the lease that
// currently holds account in service's lease bucket, ErrStaleToken if
// another lease (or none) holds it, or another error if NATS cannot answer
// (then refuse the write as temporary, never accept it). It reads from the
// stream leader, not a possibly lagging replica.
func CheckToken(ctx context.Context, js jetstream.JetStream, service, account string, token uint64) error {
	v, rev, err := readLease(ctx, js, LeaseBucket(service), account)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("%w: %s has no lease", ErrStaleToken, account)
	}
	if err != nil {
		return fmt.Errorf("ownership: check token of %s: %w", account, err)
	}
	current := v.Token
	if current == 0 { // not renewed yet: the creating revision is the token's
		current = v.Epoch + rev
	}
	if current != token {
		return fmt.Errorf("%w: %s is held with token %d, not %d", ErrStaleToken, account, current, token)
	}
	return nil
}

// bucketEpoch returns the epoch of a KV bucket: the time its stream was
// created, as the NATS server recorded it, in microseconds since 1970.
// A bucket created anew (NATS replaced, its JetStream data lost, or the
// bucket deleted) restarts its revisions at 1 but has a later epoch, and
// the epoch is far larger than any revision count (one write per
// microsecond over the bucket's whole life), so epoch + revision keeps
// growing across bucket generations. Read from the stream leader.
func bucketEpoch(ctx context.Context, js jetstream.JetStream, bucket string) (uint64, error) {
	s, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return 0, fmt.Errorf("ownership: epoch of bucket %s: %w", bucket, err)
	}
	created := s.CachedInfo().Created
	if created.IsZero() || created.UnixMicro() <= 0 {
		return 0, nil // a server that does not say: tokens are plain revisions
	}
	return uint64(created.UnixMicro()), nil
}
