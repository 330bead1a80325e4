package ownership

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailbus/mailbus/pkg/backoff"
)

// Defaults of Config. See docs/decisions/0010-account-leases.md for the
// reasons behind the numbers.
const (
	DefaultLeaseTTL = 30 * time.Second
	// DefaultSafetyMargin is how long before the lease can expire on the
	// server the worker's context is cancelled: time for the worker to
	// stop, plus clock-rate error between this host and the NATS leader.
	DefaultSafetyMargin = 5 * time.Second
)

// Sentinel errors.
var (
	// ErrHeld is returned by TryAcquire when another replica holds the
	// lease.
	ErrHeld = errors.New("ownership: lease held by another replica")
	// ErrLost is the cause of a lease context cancelled because the lease
	// was lost: a renewal was refused (the revision moved on: another
	// replica took it) or no renewal succeeded before the local deadline.
	ErrLost = errors.New("ownership: lease lost")
	// ErrReleased is the cause of a lease context cancelled by Release.
	ErrReleased = errors.New("ownership: lease released")
	// ErrStaleToken is returned by CheckToken when the token is not the
	// current lease's.
	ErrStaleToken = errors.New("ownership: stale fencing token")
	// ErrStopped is returned by Acquire on a Manager that was killed (tests).
	ErrStopped = errors.New("ownership: manager stopped")
)

// Config configures a Manager. JetStream and Service are required; zero
// durations take the defaults described on each field.
type Config struct {
	// JetStream is the NATS JetStream context the buckets live in.
	JetStream jetstream.JetStream
	// Service names the kind of replica ("pop3fetcher", "imapsync"); each
	// service has its own buckets, MembersBucket(Service) and
	// LeaseBucket(Service).
	Service string
	// ReplicaID identifies this replica; it must be unique among the live
	// replicas of the service and a valid KV key ([-_=./A-Za-z0-9]). Empty
	// means the host name plus a random suffix (a restarted process is a
	// new member).
	ReplicaID string
	// LeaseTTL is how long a lease lives on the server after its last
	// renewal; 0 means DefaultLeaseTTL. Every replica of a service must use
	// the same value: it is the lease bucket's MaxAge.
	LeaseTTL time.Duration
	// SafetyMargin is how long before (last renewal sent + LeaseTTL) the
	// worker's context is cancelled; 0 means DefaultSafetyMargin, or
	// LeaseTTL/6 when that is smaller.
	SafetyMargin time.Duration
	// RenewInterval is how often a lease is renewed; 0 means LeaseTTL/3,
	// capped so that at least two renewals fit before the local deadline.
	RenewInterval time.Duration
	// MemberTTL is how long a heartbeat keeps a replica in the member set;
	// 0 means LeaseTTL. It is the members bucket's MaxAge.
	MemberTTL time.Duration
	// HeartbeatInterval is how often the heartbeat is written and the
	// member list re-read; 0 means MemberTTL/3.
	HeartbeatInterval time.Duration
	// RetryInterval is how often Acquire tries again a lease held by
	// another replica when it sees no release (a release is seen at once on
	// the lease bucket's watch); 0 means min(RenewInterval, 1s).
	RetryInterval time.Duration
	// Replicas is the buckets' replica count (3 on a 3-node NATS cluster);
	// 0 means 1.
	Replicas int
	// Storage is the buckets' storage; the zero value is file storage,
	// which keeps leases over a NATS restart.
	Storage jetstream.StorageType
	// Registerer, when set, receives the Manager's metrics
	// (mailbus_ownership_*).
	Registerer prometheus.Registerer
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
}

var (
	keyRE     = regexp.MustCompile(`^[-_=./A-Za-z0-9]+$`)
	serviceRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
)

// MembersBucket is the KV bucket of a service's member heartbeats.
func MembersBucket(service string) string {
	return "MAILBUS_MEMBERS_" + strings.ToUpper(service)
}

// LeaseBucket is the KV bucket of a service's account leases.
func LeaseBucket(service string) string {
	return "MAILBUS_LEASES_" + strings.ToUpper(service)
}

func (c *Config) setDefaults() error {
	if c.JetStream == nil {
		return errors.New("ownership: Config.JetStream is required")
	}
	if !serviceRE.MatchString(c.Service) {
		return fmt.Errorf("ownership: invalid service name %q", c.Service)
	}
	if c.ReplicaID == "" {
		host, _ := os.Hostname()
		host = regexp.MustCompile(`[^-_A-Za-z0-9]`).ReplaceAllString(host, "-")
		if host == "" {
			host = "replica"
		}
		c.ReplicaID = host + "-" + nuid.Next()[:8]
	}
	if !keyRE.MatchString(c.ReplicaID) || strings.HasPrefix(c.ReplicaID, ".") || strings.HasSuffix(c.ReplicaID, ".") {
		return fmt.Errorf("ownership: invalid replica id %q", c.ReplicaID)
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.SafetyMargin == 0 {
		c.SafetyMargin = min(DefaultSafetyMargin, c.LeaseTTL/6)
	}
	if c.SafetyMargin <= 0 || c.SafetyMargin >= c.LeaseTTL {
		return fmt.Errorf("ownership: SafetyMargin %v must be positive and below LeaseTTL %v", c.SafetyMargin, c.LeaseTTL)
	}
	window := c.LeaseTTL - c.SafetyMargin // how long a renewal keeps the worker going
	if c.RenewInterval == 0 {
		c.RenewInterval = min(c.LeaseTTL/3, window/2)
	}
	if c.RenewInterval <= 0 || c.RenewInterval > window/2 {
		return fmt.Errorf("ownership: RenewInterval %v must be positive and at most (LeaseTTL-SafetyMargin)/2 = %v", c.RenewInterval, window/2)
	}
	if c.MemberTTL == 0 {
		c.MemberTTL = c.LeaseTTL
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = c.MemberTTL / 3
	}
	if c.HeartbeatInterval <= 0 || c.HeartbeatInterval >= c.MemberTTL {
		return fmt.Errorf("ownership: HeartbeatInterval %v must be positive and below MemberTTL %v", c.HeartbeatInterval, c.MemberTTL)
	}
	if c.RetryInterval == 0 {
		c.RetryInterval = min(c.RenewInterval, time.Second)
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Manager is one replica's view of its service's members and its leases.
// Create it with New, run it with Run, and plug it into an
// accountrun.Supervisor with Supervise (or Filter, Wrap and OnChange).
type Manager struct {
	cfg     Config
	members jetstream.KeyValue
	leases  jetstream.KeyValue
	log     *slog.Logger
	metrics *metrics
	// epoch is the lease bucket's epoch as last read (bucketEpoch): the
	// base of the fencing tokens of the leases this replica takes.
	epoch atomic.Uint64

	mu       sync.Mutex
	known    map[string]bool // live members other than self, as last seen
	active   bool            // this replica counts itself a member (Run is running)
	view     []string        // sorted member set used by Filter
	onChange []func()
	waiters  map[string]chan struct{} // account -> signalled when its lease is released
	held     map[string]*Lease
	dead     bool
	deadCh   chan struct{}
}

// New opens (creating or updating) the service's buckets and returns a
// Manager. The bucket TTLs come from cfg, so every replica of a service
// must be configured alike.
func New(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	members, err := cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      MembersBucket(cfg.Service),
		Description: "mailbus " + cfg.Service + " replicas: one heartbeat key per live replica",
		History:     1,
		TTL:         cfg.MemberTTL,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ownership: members bucket: %w", err)
	}
	leases, err := cfg.JetStream.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      LeaseBucket(cfg.Service),
		Description: "mailbus " + cfg.Service + " account leases: key = account id, revision = fencing token",
		History:     1,
		TTL:         cfg.LeaseTTL,
		Storage:     cfg.Storage,
		Replicas:    cfg.Replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("ownership: lease bucket: %w", err)
	}
	epoch, err := bucketEpoch(ctx, cfg.JetStream, LeaseBucket(cfg.Service))
	if err != nil {
		return nil, fmt.Errorf("ownership: lease bucket: %w", err)
	}
	met, err := newMetrics(cfg.Registerer, cfg.Service)
	if err != nil {
		return nil, fmt.Errorf("ownership: metrics: %w", err)
	}
	m := &Manager{
		metrics: met,
		cfg:     cfg,
		members: members,
		leases:  leases,
		log:     cfg.Logger.With("service", cfg.Service, "replica", cfg.ReplicaID),
		known:   map[string]bool{},
		waiters: map[string]chan struct{}{},
		held:    map[string]*Lease{},
		deadCh:  make(chan struct{}),
	}
	m.epoch.Store(epoch)
	return m, nil
}

// ID returns this replica's id.
func (m *Manager) ID() string { return m.cfg.ReplicaID }

// Config returns the configuration with its defaults filled in.
func (m *Manager) Config() Config { return m.cfg }

// Members returns the sorted member set Filter decides by: the live
// replicas seen in the members bucket, with this replica while Run runs.
func (m *Manager) Members() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.view)
}

// OnChange registers f to be called (from Run's goroutine) whenever the
// member set changes, such as accountrun.Supervisor.Kick. f must not block.
func (m *Manager) OnChange(f func()) {
	m.mu.Lock()
	m.onChange = append(m.onChange, f)
	m.mu.Unlock()
}

// Owns reports whether rendezvous hashing over the current member set
// gives account to this replica. It is false while Run is not running.
func (m *Manager) Owns(account string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.active && Owner(account, m.view) == m.cfg.ReplicaID
}

type heartbeat struct {
	ID      string    `json:"id"`
	Started time.Time `json:"started"`
}

// Run announces this replica (a heartbeat key renewed every
// HeartbeatInterval), follows the member set (a watch on the members
// bucket, plus a re-read every HeartbeatInterval, which is how expired
// heartbeats are noticed) and the releases of leases, until ctx ends. Then
// it stops counting itself a member (Filter turns false for every
// account), tells OnChange and deletes its heartbeat, so that the others
// take its accounts over at once.
//
// Leases are not released by Run: each is released by its worker's Wrap
// when the worker has stopped, never while it may still run.
func (m *Manager) Run(ctx context.Context) error {
	started := time.Now().UTC()
	beat, _ := json.Marshal(heartbeat{ID: m.cfg.ReplicaID, Started: started})
	bo := backoff.Backoff{Min: 100 * time.Millisecond, Max: m.cfg.HeartbeatInterval}
	for {
		_, err := m.members.Put(ctx, m.cfg.ReplicaID, beat)
		if err == nil {
			break
		}
		m.log.Warn("cannot announce this replica; retrying", "err", err)
		if !backoff.Sleep(ctx, bo.Next()) {
			return nil
		}
	}
	m.mu.Lock()
	m.active = true
	m.mu.Unlock()
	m.refreshMembers(ctx)
	m.log.Info("replica joined", "members", m.Members())

	defer func() {
		m.mu.Lock()
		m.active = false
		dead := m.dead
		m.mu.Unlock()
		m.updateView()
		if dead {
			return
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := m.members.Delete(dctx, m.cfg.ReplicaID); err != nil {
			m.log.Warn("cannot remove this replica's heartbeat; it expires on its own", "err", err)
		}
		m.log.Info("replica left")
	}()

	var memberW, leaseW jetstream.KeyWatcher
	defer func() {
		if memberW != nil {
			memberW.Stop()
		}
		if leaseW != nil {
			leaseW.Stop()
		}
	}()
	watch := func() {
		var err error
		if memberW == nil {
			if memberW, err = m.members.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.MetaOnly()); err != nil {
				m.log.Warn("cannot watch members; re-reading them periodically", "err", err)
				memberW = nil
			}
		}
		if leaseW == nil {
			if leaseW, err = m.leases.WatchAll(ctx, jetstream.UpdatesOnly(), jetstream.MetaOnly()); err != nil {
				m.log.Warn("cannot watch leases; waiting acquirers retry periodically", "err", err)
				leaseW = nil
			}
		}
	}
	watch()
	t := time.NewTicker(m.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		var memberC, leaseC <-chan jetstream.KeyValueEntry
		if memberW != nil {
			memberC = memberW.Updates()
		}
		if leaseW != nil {
			leaseC = leaseW.Updates()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-m.deadCh:
			// Killed (tests): no more heartbeats, no goodbye.
			<-ctx.Done()
			return nil
		case <-t.C:
			hctx, cancel := context.WithTimeout(ctx, m.cfg.HeartbeatInterval)
			if _, err := m.members.Put(hctx, m.cfg.ReplicaID, beat); err != nil && ctx.Err() == nil {
				m.log.Warn("cannot renew this replica's heartbeat", "err", err)
			}
			cancel()
			m.refreshMembers(ctx)
			watch()
		case e, ok := <-memberC:
			if !ok {
				memberW = nil
				continue
			}
			if e != nil {
				m.memberEvent(e)
			}
		case e, ok := <-leaseC:
			if !ok {
				leaseW = nil
				continue
			}
			if e != nil && (e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge) {
				m.signalRelease(e.Key())
			}
		}
	}
}

// refreshMembers re-reads the member keys; expired heartbeats disappear
// from the bucket without a watch event, so this is how they are noticed.
func (m *Manager) refreshMembers(ctx context.Context) {
	lctx, cancel := context.WithTimeout(ctx, m.cfg.HeartbeatInterval)
	defer cancel()
	lister, err := m.members.ListKeys(lctx)
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("cannot list members; keeping the last view", "err", err)
		}
		return
	}
	known := map[string]bool{}
	for k := range lister.Keys() {
		known[k] = true
	}
	if lctx.Err() != nil {
		return // incomplete
	}
	m.mu.Lock()
	m.known = known
	m.mu.Unlock()
	m.updateView()
}

func (m *Manager) memberEvent(e jetstream.KeyValueEntry) {
	m.mu.Lock()
	switch e.Operation() {
	case jetstream.KeyValuePut:
		if m.known[e.Key()] {
			m.mu.Unlock()
			return
		}
		m.known[e.Key()] = true
	default:
		if !m.known[e.Key()] {
			m.mu.Unlock()
			return
		}
		delete(m.known, e.Key())
	}
	m.mu.Unlock()
	m.updateView()
}

// updateView recomputes the member set and tells OnChange if it changed.
func (m *Manager) updateView() {
	m.mu.Lock()
	view := make([]string, 0, len(m.known)+1)
	for k := range m.known {
		if k != m.cfg.ReplicaID {
			view = append(view, k)
		}
	}
	if m.active {
		view = append(view, m.cfg.ReplicaID)
	}
	slices.Sort(view)
	changed := !slices.Equal(view, m.view)
	m.view = view
	m.metrics.members.Set(float64(len(view)))
	hooks := slices.Clone(m.onChange)
	m.mu.Unlock()
	if changed {
		m.log.Info("member set changed", "members", view)
		for _, f := range hooks {
			f()
		}
	}
}

func (m *Manager) signalRelease(account string) {
	m.mu.Lock()
	ch := m.waiters[account]
	m.mu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Held returns the accounts this replica holds a lease on.
func (m *Manager) Held() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.held))
	for id := range m.held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// kill simulates a crash (kill -9) for tests: heartbeats and every
// renewal stop, nothing is released or deleted, and Acquire fails. The
// workers' contexts are still cancelled at their local deadlines.
func (m *Manager) kill() {
	m.mu.Lock()
	if m.dead {
		m.mu.Unlock()
		return
	}
	m.dead = true
	close(m.deadCh)
	held := make([]*Lease, 0, len(m.held))
	for _, l := range m.held {
		held = append(held, l)
	}
	m.mu.Unlock()
	for _, l := range held {
		l.stopRenewing()
	}
}

func (m *Manager) isDead() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dead
}
