// Package imapsync is the mailbus IMAP sync service: for every IMAP account
// in the store it keeps every folder in sync both ways.
//
// Upstream to store: folders are listed (LIST with SPECIAL-USE roles,
// include/exclude patterns) and declared with UpsertMailboxes; folders gone
// upstream are deleted (or renamed, when a new folder has the same
// UIDVALIDITY). Each folder's initial sync fetches newest first, in UID
// FETCH batches, streamed into IngestMessages, with a cursor in
// SetMailboxSyncState so that an interrupted sync resumes without fetching
// again what the store has. Later passes are deltas: new UIDs above the
// cursor, flag changes (FETCH CHANGEDSINCE with CONDSTORE, else the flags of
// every known UID compared with the store's) and expunges (UID SEARCH ALL
// compared with the store's identities). A message larger than
// Config.MaxMessageSize (by RFC822.SIZE, fetched first) is left on the
// server. QRESYNC is never enabled (go-imap v2 beta.8 cannot parse
// VANISHED). A UIDVALIDITY change resyncs the folder.
//
// Push: INBOX (and the account's idle_folders, within the connection
// budget) is IDLEd on connections of its own; a notification marks the
// folder dirty and the work connection syncs it. Other folders are polled
// with STATUS. Freshness (decision 22): every folder is checked within the
// account's poll interval, IDLEd or not; an IDLE that carried nothing for
// a poll interval is ended and its folder checked, and a server whose
// IDLE does not push is found out and polled. Connections that go silent
// are replaced.
//
// Store to upstream: pending write-backs (ListPendingWriteBacks, woken by
// the account's device events on NATS or a timer) are applied in order on
// the work connection before any folder is synced, and acknowledged with
// AckWriteBack (placements from COPYUID/APPENDUID, gone messages).
//
// Errors: a permanent upstream error (bad credentials, a certificate that
// does not verify) parks the account with an account.status PARKED; any
// other error reconnects after a jittered backoff (RETRYING). Every IMAP
// operation has a deadline (the connection is closed when it passes).
//
// This package holds the decisions; the IMAP commands, the login and the
// deadlines are package imapconn's. Each account's session loop is the
// one driver of write-backs and syncs (decision 46).
package imapsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/accountrun"
	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ingest"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/serving"
)

// Defaults.
const (
	DefaultListen         = "127.0.0.1:7410"
	DefaultMetricsListen  = "127.0.0.1:7411"
	DefaultTimeout        = 60 * time.Second
	DefaultPollInterval   = 60 * time.Second
	DefaultWriteBackPoll  = 10 * time.Second
	DefaultIdleRestart    = 4 * time.Minute
	DefaultConnections    = 3
	DefaultFetchBatch     = 250
	DefaultRebindChunk    = 1000
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = 5 * time.Minute
	DefaultShutdownGrace  = 5 * time.Second
	serviceName           = "imapsync"
	initialChunkBatches   = 8 // FETCH batches between looks at write-backs
	storeCallTimeout      = 60 * time.Second
	maxWriteBackAttempts  = 5
	statusReportedStateOK = mailbusv1.SyncState_SYNC_STATE_IDLE
)

// DefaultProgressInterval is the shortest time between two progress
// reports of an initial sync (each one is a store call and an event).
const DefaultProgressInterval = time.Second

// DefaultWriteBackRetry is the default of Config.WriteBackRetry.
const DefaultWriteBackRetry = 2 * time.Second

// DefaultMaxFolders is the default of Config.MaxFolders.
const DefaultMaxFolders = 10000

// DefaultMaxMessageSize is the default of Config.MaxMessageSize.
const DefaultMaxMessageSize = 64 << 20

// Config configures the service. The zero value of a field means its
// default; StoreAddr or StoreConn is required.
type Config struct {
	// StoreAddr is the store's gRPC address.
	StoreAddr string
	// StoreTLS, when set, dials StoreAddr over TLS with it (pkg/grpctls);
	// nil dials in plaintext.
	StoreTLS *tls.Config
	// StoreConn, when set, is used instead of dialing StoreAddr (it
	// carries its own credentials): a gRPC connection, or mailbus
	// serve's in-process channel (pkg/inproc).
	StoreConn grpc.ClientConnInterface
	// Token is the service API token sent to the store at StoreAddr.
	Token string
	// Listen is the gRPC address (health, reflection); "-" opens none
	// (mailbus serve runs the service in its own process).
	Listen string
	// Listener, when set, is used instead of Listen.
	Listener net.Listener
	// MetricsListen is the /metrics and /healthz address; "-" disables it.
	MetricsListen string
	// TLS, when set, serves gRPC over TLS; without it a non-loopback
	// Listen is refused unless Insecure is set (pkg/serving).
	TLS      *tls.Config
	Insecure bool
	// NATSURL, when set, wakes write-backs up on the account's device
	// events; without it they are polled every WriteBackPoll.
	NATSURL string
	// NATSOptions are added to the NATS connection's options.
	NATSOptions []nats.Option
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Registry collects metrics; nil means a new one.
	Registry *prometheus.Registry
	// RootCAs verifies upstream certificates; nil means the system pool.
	RootCAs *x509.CertPool
	// Timeout bounds every upstream operation (dial, a command, the gap
	// between two FETCH responses); default 60s.
	Timeout time.Duration
	// PollInterval is how often folders that are not IDLEd are checked
	// with STATUS when the account sets none; default 60s. It also bounds
	// how long an IDLEd folder goes unchecked: an IDLE that carried no
	// update for a poll interval is ended and the folder checked
	// (decision 22).
	PollInterval time.Duration
	// WriteBackPoll is how often pending write-backs are looked for
	// without a NATS wake-up; default 10s.
	WriteBackPoll time.Duration
	// IdleRestart is how often IDLE is ended (DONE) and issued again,
	// with a NOOP between, each answer awaited within Timeout: a silent
	// (dead) IDLE connection is found and replaced within IdleRestart +
	// Timeout, and NAT mappings are kept. An IDLE is also ended after a
	// poll interval without updates, and its folder checked (decision
	// 22). Default 4 min (RFC 9051 asks for less than 29).
	IdleRestart time.Duration
	// Connections is the most IMAP connections per account: one for work,
	// the rest for IDLE (INBOX first); default 3. With 1, INBOX is IDLEd
	// on the work connection between steps (decision 19): half the memory
	// and server sessions of an idle account, for a round trip (DONE) more
	// before a write-back or poll.
	Connections int
	// FetchBatch is the number of messages per UID FETCH; default 250.
	FetchBatch int
	// RebindChunk is the most matches sent in one RebindMessages call
	// (one store transaction, under its own deadline) after a
	// UIDVALIDITY change; default 1000.
	RebindChunk int
	// RetryMin and RetryMax bound the reconnect backoff.
	RetryMin, RetryMax time.Duration
	// ShutdownGrace is how long the step in progress may go on once Run's
	// context ends, before connections are closed; then IDLE is ended and
	// every connection logs out. Default 5s; negative means none (a kill).
	// With Ownership it is at most half the lease safety margin, so that a
	// worker whose lease is lost stops before another replica may start.
	ShutdownGrace time.Duration
	// MaxFolders is the most folders a server may list (LIST "" "*",
	// before include/exclude patterns apply). A server that lists more
	// parks the account with a reason saying so, instead of holding an
	// unbounded list in memory. Default DefaultMaxFolders, the store's
	// limit of mailboxes per account.
	MaxFolders int
	// MaxMessageSize is the largest message fetched (by its RFC822.SIZE);
	// a larger one is left on the server. Default 64 MiB, the store's.
	MaxMessageSize int64
	// WriteBackRetry is how long a write-back the server refused for now
	// (RETRY) waits before its next attempt, doubled at each attempt (at
	// most RetryMax); other write-backs go on meanwhile. Default 2s.
	WriteBackRetry time.Duration
	// ProgressInterval is the shortest time between two account.status
	// progress reports during an initial sync; default 1s.
	ProgressInterval time.Duration
	// AccountRefresh is how often the account list is read: the safety
	// net, since the store announces account changes as they happen
	// (decision 0028).
	AccountRefresh time.Duration
	// WrapConn, when set, wraps every upstream connection (tests: cut
	// connections, count bytes).
	WrapConn func(accountID string, c net.Conn) net.Conn
	// Ready, if set, is called once the service serves, with its gRPC
	// address ("" without one).
	Ready func(addr string)
	// Ownership, when set, makes this process one replica of several: it
	// works only the accounts rendezvous hashing gives it, each under a
	// lease (pkg/ownership), and sends the lease's fencing token with
	// every store write. Its Service is set to "imapsync"; a nil JetStream
	// means the connection to NATSURL, which is then required. Nil (the
	// default) works every account with token 0 (one replica).
	Ownership *ownership.Config
	// HostLimit paces new IMAP connections (work and IDLE) per host and
	// bounds how many are open at once (pkg/hostlimit; zero value: 10 per
	// second, a burst of 5, no budget). The limits are per replica.
	HostLimit hostlimit.Config
}

// Service is the IMAP sync service.
type Service struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics
	hosts   *hostlimit.Limiter

	mu     sync.Mutex
	wakers map[string]*account
	// fresh exports the accounts' freshness (decision 22).
	fresh *freshnessCollector
}

// New checks the configuration.
func New(cfg Config) (*Service, error) {
	if cfg.StoreAddr == "" && cfg.StoreConn == nil {
		return nil, errors.New("imapsync: give the store's address (--store)")
	}
	if cfg.Ownership != nil && cfg.Ownership.JetStream == nil && cfg.NATSURL == "" {
		return nil, errors.New("imapsync: ownership needs NATS: set NATSURL (--nats)")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" && cfg.Listener == nil {
		cfg.Listen = DefaultListen
	}
	if cfg.Listener == nil && cfg.Listen != serving.NoGRPC {
		if _, err := grpctls.CheckListen(cfg.Listen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("imapsync: --listen %w", err)
		}
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = DefaultMetricsListen
	}
	if cfg.MetricsListen == "-" {
		cfg.MetricsListen = ""
	}
	if cfg.MetricsListen != "" && cfg.MetricsListen != "-" {
		if _, err := grpctls.CheckListen(cfg.MetricsListen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("imapsync: --metrics-listen %w", err)
		}
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.Timeout, DefaultTimeout)
	def(&cfg.PollInterval, DefaultPollInterval)
	def(&cfg.WriteBackPoll, DefaultWriteBackPoll)
	def(&cfg.IdleRestart, DefaultIdleRestart)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.ProgressInterval, DefaultProgressInterval)
	def(&cfg.WriteBackRetry, DefaultWriteBackRetry)
	switch {
	case cfg.ShutdownGrace == 0:
		cfg.ShutdownGrace = DefaultShutdownGrace
	case cfg.ShutdownGrace < 0:
		cfg.ShutdownGrace = 0
	}
	if cfg.Connections <= 0 {
		cfg.Connections = DefaultConnections
	}
	if cfg.MaxFolders <= 0 {
		cfg.MaxFolders = DefaultMaxFolders
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.FetchBatch <= 0 {
		cfg.FetchBatch = DefaultFetchBatch
	}
	if cfg.RebindChunk <= 0 {
		cfg.RebindChunk = DefaultRebindChunk
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	fresh := newFreshnessCollector()
	if err := cfg.Registry.Register(fresh); err != nil {
		return nil, fmt.Errorf("imapsync: metrics: %w", err)
	}
	return &Service{cfg: cfg, log: cfg.Logger.With("service", serviceName), metrics: m, wakers: map[string]*account{}, hosts: hostlimit.New(cfg.HostLimit), fresh: fresh}, nil
}

// Run runs the service until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	cfg := s.cfg
	conn := cfg.StoreConn
	if conn == nil {
		dialed, err := grpc.NewClient(cfg.StoreAddr, grpctls.Credentials(cfg.StoreTLS),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20)),
			apitoken.DialOption(cfg.Token))
		if err != nil {
			return fmt.Errorf("imapsync: store client: %w", err)
		}
		defer dialed.Close()
		conn = dialed
	}
	var nc *nats.Conn
	if cfg.NATSURL != "" {
		var err error
		nc, err = s.subscribe(cfg)
		switch {
		case err != nil && cfg.Ownership != nil && cfg.Ownership.JetStream == nil:
			return fmt.Errorf("imapsync: NATS, needed for ownership: %w", err)
		case err != nil:
			// NATS only wakes write-backs up early; the poll covers.
			s.log.Warn("NATS unavailable; write-backs are polled", "err", err)
		default:
			defer nc.Close()
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var owner *ownership.Manager
	if cfg.Ownership != nil {
		var err error
		if owner, err = s.ownership(ctx, nc); err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting
			}
			return err
		}
	}
	srv, err := serving.New(serving.Config{Name: serviceName, Listen: cfg.Listen, Listener: cfg.Listener, MetricsListen: cfg.MetricsListen, Registry: cfg.Registry, Logger: s.log, TLS: cfg.TLS, Insecure: cfg.Insecure})
	if err != nil {
		return fmt.Errorf("imapsync: %w", err)
	}
	srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)

	clients := storeClients{
		ingest:    mailbusv1.NewIngestServiceClient(conn),
		mailboxes: mailbusv1.NewMailboxServiceClient(conn),
	}
	clients.stream = ingest.New(clients.ingest, ingest.Config{})
	supCfg := accountrun.Config{
		Accounts: accountrun.FromClient(mailbusv1.NewAccountServiceClient(conn)),
		Changes:  clients.ingest,
		Protocol: mailbusv1.Protocol_PROTOCOL_IMAP,
		Refresh:  cfg.AccountRefresh,
		Logger:   s.log,
		Work: func(ctx context.Context, a *mailbusv1.Account) {
			newAccount(s, clients, a).run(ctx)
		},
	}
	var sup *accountrun.Supervisor
	ownDone := make(chan struct{})
	if owner == nil {
		sup = accountrun.New(supCfg)
		close(ownDone)
	} else {
		sup = owner.Supervise(supCfg)
		go func() {
			defer close(ownDone)
			_ = owner.Run(ctx) // on ctx's end, deletes the heartbeat
		}()
	}
	defer func() { cancel(); <-ownDone }()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); errc <- sup.Run(ctx) }()
	go func() { defer wg.Done(); errc <- srv.Run(ctx) }()
	addr := ""
	if a := srv.Addr(); a != nil {
		addr = a.String()
	}
	if cfg.Ready != nil {
		cfg.Ready(addr)
	}
	s.log.Info("imapsync running", "addr", addr, "store", cfg.StoreAddr)
	err = <-errc
	cancel()
	wg.Wait()
	return err
}

// ownership creates this replica's ownership Manager on Config.Ownership's
// JetStream, or on nc's.
func (s *Service) ownership(ctx context.Context, nc *nats.Conn) (*ownership.Manager, error) {
	cfg := *s.cfg.Ownership
	cfg.Service = serviceName
	if cfg.Logger == nil {
		cfg.Logger = s.log
	}
	if cfg.Registerer == nil {
		cfg.Registerer = s.cfg.Registry
	}
	if cfg.JetStream == nil {
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("imapsync: JetStream: %w", err)
		}
		cfg.JetStream = js
	}
	m, err := ownership.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("imapsync: %w", err)
	}
	// A worker whose lease is lost must stop within the safety margin:
	// the step it may finish after its context ends has to fit in it.
	if limit := m.Config().SafetyMargin / 2; s.cfg.ShutdownGrace > limit {
		s.log.Info("shutdown grace shortened to half the lease safety margin", "grace", limit.String())
		s.cfg.ShutdownGrace = limit
	}
	s.log.Info("ownership on", "replica", m.ID(), "lease_ttl", m.Config().LeaseTTL.String())
	return m, nil
}

// subscribe listens to every account's events and wakes the account's
// write-back loop on a device change.
func (s *Service) subscribe(cfg Config) (*nats.Conn, error) {
	opts := append([]nats.Option{nats.Name("mailbus-imapsync"), nats.CustomInboxPrefix(natsperm.InboxPrefix(natsperm.RoleIMAPSync)), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.ReconnectJitter(500*time.Millisecond, time.Second), nats.RetryOnFailedConnect(true)}, cfg.NATSOptions...)
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, err
	}
	_, err = nc.Subscribe(events.SubjectPrefix+".>", func(m *nats.Msg) {
		acct, kind, err := events.ParseSubject(m.Subject)
		if err != nil || kind == events.KindAccountStatus || kind == events.KindWriteBackFailed {
			return
		}
		ev, err := events.Unmarshal(m.Data)
		if err != nil || ev.GetOrigin().GetKind() != mailbusv1.OriginKind_ORIGIN_KIND_DEVICE {
			return
		}
		s.wake(acct)
	})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return nc, nil
}

func (s *Service) wake(account string) {
	s.mu.Lock()
	w := s.wakers[account]
	s.mu.Unlock()
	if w != nil {
		kick(w.wb)
	}
}

// register makes w the worker of its account that wake and SyncNow reach;
// the returned function unregisters it.
func (s *Service) register(w *account) func() {
	s.mu.Lock()
	s.wakers[w.a.Id] = w
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.wakers[w.a.Id] == w {
			delete(s.wakers, w.a.Id)
		}
		s.mu.Unlock()
	}
}

// ErrNotWorked is returned by SyncNow for an account this process does
// not work now (unknown, not IMAP, owned by another replica, or between
// two sessions).
var ErrNotWorked = errors.New("imapsync: the account is not worked by this process now")

// SyncNow runs a full pass of an account now, without waiting for its poll
// interval or an IDLE notification: its pending write-backs, the folder
// list, and a sync of every folder, IDLEd ones included. It returns once
// the pass has ended (with the pass's error), or ErrNotWorked when no
// session of the account is running here, or ctx's error. A pass started
// by SyncNow runs to its end even when ctx ends first.
func (s *Service) SyncNow(ctx context.Context, accountID string) error {
	s.mu.Lock()
	w := s.wakers[accountID]
	s.mu.Unlock()
	if w == nil {
		return ErrNotWorked
	}
	done := make(chan error, 1)
	select {
	case w.syncNow <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type storeClients struct {
	ingest    mailbusv1.IngestServiceClient
	stream    *ingest.Client // IngestMessages
	mailboxes mailbusv1.MailboxServiceClient
}

type metrics struct {
	messages   *prometheus.CounterVec
	bytes      prometheus.Counter
	writebacks *prometheus.CounterVec
	connects   *prometheus.CounterVec
	syncs      *prometheus.CounterVec
	accounts   *prometheus.GaugeVec
	// staleLeases counts workers stopped because the store refused their
	// lease token (another replica claimed the account).
	staleLeases prometheus.Counter
	// noPush counts account workers that found their server's IDLE does
	// not push (decision 22).
	noPush prometheus.Counter
	// prefetched counts folders of initial syncs fetched on a second
	// connection (prefetch.go).
	prefetched prometheus.Counter
	// prefetchYields counts second connections stopped so that a
	// write-back is applied (prefetch.go, take).
	prefetchYields prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		messages:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailbus_imapsync_messages_total", Help: "Messages fetched from upstream and ingested, by kind (initial, delta)."}, []string{"kind"}),
		bytes:      prometheus.NewCounter(prometheus.CounterOpts{Name: "mailbus_imapsync_fetched_bytes_total", Help: "Message bytes fetched from upstream."}),
		writebacks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailbus_imapsync_writebacks_total", Help: "Write-backs acknowledged, by op and outcome."}, []string{"op", "outcome"}),
		connects:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailbus_imapsync_connects_total", Help: "Upstream connection attempts, by result (ok, temporary, permanent)."}, []string{"result"}),
		syncs:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailbus_imapsync_folder_syncs_total", Help: "Folder syncs, by kind (initial, delta, resync)."}, []string{"kind"}),
		accounts:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mailbus_imapsync_accounts", Help: "Accounts by sync state."}, []string{"state"}),
		staleLeases: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailbus_imapsync_stale_lease_stops_total",
			Help: "Account workers stopped because the store refused their lease token: another replica had claimed the account."}),
		noPush: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailbus_imapsync_idle_no_push_total",
			Help: "Account workers that found their server's IDLE carries no updates (new mail found by checks it had not announced) and poll its folders instead."}),
		prefetched: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailbus_imapsync_prefetched_folders_total",
			Help: "Folders of initial syncs fetched on a second connection while the work connection synced others."}),
		prefetchYields: prometheus.NewCounter(prometheus.CounterOpts{Name: "mailbus_imapsync_prefetch_yields_total",
			Help: "Second connections of initial syncs stopped at a batch boundary so that a device's write-back is applied while the work connection waited for them."}),
	}
	for _, c := range []prometheus.Collector{m.messages, m.bytes, m.writebacks, m.connects, m.syncs, m.accounts, m.staleLeases, m.noPush, m.prefetched, m.prefetchYields} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("imapsync: metrics: %w", err)
		}
	}
	return m, nil
}

func stateLabel(s mailbusv1.SyncState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "SYNC_STATE_"))
}
