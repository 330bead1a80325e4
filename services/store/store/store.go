// Package store is the mailbus store service: the single source of truth
// for accounts, mailboxes, messages and flags. It serves devices
// (AccountService, MailboxService, SyncService) and fetchers
// (IngestService) over gRPC, and announces every committed change as an
// event on NATS JetStream through a transactional outbox.
//
// New(Config) validates the configuration; Run(ctx) opens the database
// (SQLite in DataDir, or PostgreSQL), applies migrations, starts the relay,
// the retention pass and the servers, and shuts everything down gracefully
// when ctx ends. The mailbus-store binary and the all-in-one mailbus
// binary both run it.
package store

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/mailbus/mailbus/pkg/discover"
	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/inproc"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/pkg/serving"
	"github.com/mailbus/mailbus/services/store/internal/api"
	"github.com/mailbus/mailbus/services/store/internal/auth"
	"github.com/mailbus/mailbus/services/store/internal/console"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/relay"
)

// Defaults.
const (
	DefaultListen          = "127.0.0.1:7400"
	DefaultMetricsListen   = "127.0.0.1:7401"
	DefaultRetention       = 7 * 24 * time.Hour
	DefaultMaxMessageSize  = 64 << 20
	DefaultPruneInterval   = time.Hour
	serviceName            = "store"
	natsReconnectWait      = time.Second
	natsReconnectJitter    = 500 * time.Millisecond
	natsReconnectJitterTLS = time.Second
)

// listenWait bounds how long a store on PostgreSQL waits at start for its
// listener of other replicas' account changes before serving anyway.
const listenWait = 10 * time.Second

// Keepalive of client connections (Config.Keepalive).
const (
	DefaultKeepalive = time.Minute
)

// devKey is the fixed key of --dev mode: secrets are encrypted, but with a
// key everybody knows. Never use dev mode with real accounts.
var devKey = []byte("mailbus-dev-mode-key-NOT-SECRET!")

// Config configures the store. The zero value of each field means its
// default; SecretKey (or Dev) is required.
type Config struct {
	// Listen is the API address: gRPC, Connect and gRPC-Web.
	Listen string
	// Listener, when set, is used instead of Listen.
	Listener net.Listener
	// MetricsListen is the /metrics, /healthz (liveness) and /readyz
	// (readiness) address; "-" disables it.
	MetricsListen string
	// TLS, when set, serves gRPC over TLS (and mutual TLS when it requires
	// client certificates); see pkg/grpctls. Without it the store refuses
	// a non-loopback Listen unless Insecure is set.
	TLS      *tls.Config
	Insecure bool
	// CORSOrigins are the browser origins allowed to call the API from
	// other origins ("*": any); empty allows none.
	CORSOrigins []string
	// NATSURL is the NATS server; empty means no relay: events wait in the
	// outbox until a store with NATS runs.
	NATSURL string
	// NATSOptions are added to the NATS connection's options (credentials,
	// TLS, an in-process server).
	NATSOptions []nats.Option
	// EventsReplicas and EventsMaxAge are the replicas (0 means 1) and the
	// age limit (0 means Retention) with which the store creates the
	// events stream when it is missing (--events-replicas,
	// --events-max-age). An existing stream keeps its own settings: the
	// store only logs where they differ (decision 0030).
	EventsReplicas int
	EventsMaxAge   time.Duration
	// Stream, when its Name is set, is the stream config used instead of
	// the one EventsReplicas and EventsMaxAge make (tests: a stream of
	// their own).
	Stream jetstream.StreamConfig
	// DataDir holds the SQLite database.
	DataDir string
	// DatabaseURL selects PostgreSQL ("postgres://...").
	DatabaseURL string
	// SecretKey encrypts upstream credentials at rest (32 bytes); further
	// keys in OldSecretKeys still open values sealed under them.
	SecretKey     []byte
	OldSecretKeys [][]byte
	// Dev allows running without SecretKey, with a fixed, public key.
	Dev bool
	// Retention is how long the change log is kept.
	Retention time.Duration
	// PruneInterval is how often the retention pass runs.
	PruneInterval time.Duration
	// MaxMessageSize refuses larger messages.
	MaxMessageSize int64
	// Keepalive is how long a client connection may be silent before the
	// store pings it; one that does not answer within Keepalive more is
	// closed, which ends its streams (a fetcher that vanished without
	// closing them, whose ingest stream would wait forever to send its
	// answers).
	Keepalive time.Duration
	// ReadinessInterval is how often the store checks that its database
	// and NATS answer, for its health state (gRPC health and /readyz);
	// 0 means DefaultReadinessInterval.
	ReadinessInterval time.Duration
	// WatchPollInterval is how often live watches look without a wake-up.
	WatchPollInterval time.Duration
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Registry collects metrics; nil means a new one.
	Registry *prometheus.Registry
	// Ready, if set, is called once the store serves, with its gRPC
	// address.
	Ready func(addr string)
	// AdminTokenFile holds an admin API token; when the file is missing it
	// is created (mode 0600) with a new token. Empty means
	// DataDir/admin.token (no file without DataDir); "-" means none.
	AdminTokenFile string
	// ServiceTokenFile, when set, likewise holds a service token, the
	// credential of separately run fetchers.
	ServiceTokenFile string
	// ServiceToken, when set, is a service token accepted without being
	// stored: the credential of fetchers in the same process.
	ServiceToken string
	// AuthRecheckInterval is how often open streams re-check their token;
	// 0 means auth.DefaultRecheckInterval.
	AuthRecheckInterval time.Duration
	// Webhooks, when set, is served on the store's port behind the
	// store's authentication (admin tokens only): mailbus serve passes
	// the webhooks service it runs in the same process. Nil answers
	// WebhookService calls with UNIMPLEMENTED (mailbus-webhooks serves
	// them on its own port).
	Webhooks mailbusv1.WebhookServiceServer
	// InProcess, when set, is a channel on which the store serves its API
	// to clients in the same process too (mailbus serve's fetchers),
	// behind the same interceptors as on its port (metrics, recovery,
	// API tokens and their rules), without TCP or protobuf encoding; the
	// messages of IngestMessages pass by reference (decision 0045). The
	// store serves on it while Run runs.
	InProcess *inproc.Channel
	// Discover configures the lookups of AccountService.DiscoverSettings
	// (decision 0038); the zero value asks the internet with the system's
	// resolver. Tests point it at local servers (pkg/discovertest).
	Discover discover.Config
}

// EventsStream returns the config with which the store creates the events
// stream when it is missing (decision 0030): replicas (0 means 1) and
// maxAge, where 0 means retention, the change log's (0 means
// DefaultRetention), but never less than the de-duplication window
// (events.DefaultDuplicates): a stream that forgot events sooner would
// store a retried publish twice (and JetStream refuses an age under
// 100ms). Whatever else creates the stream before the store does (mailbus
// serve's NATS users) must use the same.
func EventsStream(replicas int, maxAge, retention time.Duration) jetstream.StreamConfig {
	if maxAge == 0 {
		maxAge = max(cmp.Or(retention, DefaultRetention), events.DefaultDuplicates)
	}
	return events.StreamConfig(replicas, maxAge, 0)
}

// AdminTokenFileName is the admin token file in the data directory.
const AdminTokenFileName = "admin.token"

// Store is the store service.
type Store struct {
	cfg     Config
	log     *slog.Logger
	secrets *secretbox.Box
}

// New checks the configuration.
func New(cfg Config) (*Store, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" && cfg.Listener == nil {
		cfg.Listen = DefaultListen
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = DefaultMetricsListen
	}
	if cfg.MetricsListen == "-" {
		cfg.MetricsListen = ""
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.PruneInterval == 0 {
		cfg.PruneInterval = DefaultPruneInterval
	}
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.Keepalive == 0 {
		cfg.Keepalive = DefaultKeepalive
	}
	if cfg.ReadinessInterval <= 0 {
		cfg.ReadinessInterval = DefaultReadinessInterval
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Retention < 0 || cfg.PruneInterval < 0 || cfg.MaxMessageSize < 0 || cfg.Keepalive < 0 {
		return nil, errors.New("store: retention, prune interval, message size limit and keepalive must not be negative")
	}
	if cfg.EventsReplicas < 0 || cfg.EventsReplicas > 5 {
		return nil, fmt.Errorf("store: --events-replicas %d: JetStream allows 1 to 5", cfg.EventsReplicas)
	}
	if cfg.EventsMaxAge != 0 && cfg.EventsMaxAge < events.DefaultDuplicates {
		return nil, fmt.Errorf("store: --events-max-age %v: give 0 (the change-log retention) or at least %v, the stream's de-duplication window", cfg.EventsMaxAge, events.DefaultDuplicates)
	}
	if cfg.Stream.Name == "" {
		cfg.Stream = EventsStream(cfg.EventsReplicas, cfg.EventsMaxAge, cfg.Retention)
	}
	switch {
	case cfg.AdminTokenFile == "-":
		cfg.AdminTokenFile = ""
	case cfg.AdminTokenFile == "" && cfg.DataDir != "":
		cfg.AdminTokenFile = filepath.Join(cfg.DataDir, AdminTokenFileName)
	}
	if err := serving.CheckOrigins(cfg.CORSOrigins); err != nil {
		return nil, fmt.Errorf("store: --cors-origin: %w", err)
	}
	if cfg.Listener == nil {
		if _, err := grpctls.CheckListen(cfg.Listen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("store: --listen %w", err)
		}
	}
	if cfg.MetricsListen != "" && cfg.MetricsListen != "-" {
		if _, err := grpctls.CheckListen(cfg.MetricsListen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("store: --metrics-listen %w", err)
		}
	}
	if cfg.DatabaseURL == "" && cfg.DataDir == "" {
		return nil, errors.New("store: give a data directory (--data) or a database URL (--database-url)")
	}
	keys := cfg.OldSecretKeys
	switch {
	case cfg.SecretKey != nil:
		keys = append([][]byte{cfg.SecretKey}, keys...)
	case cfg.Dev:
		cfg.Logger.Warn("DEV MODE: upstream credentials are encrypted with a fixed, publicly known key; never use --dev with real accounts")
		keys = append([][]byte{devKey}, keys...)
	default:
		return nil, errors.New("store: no credentials encryption key: set MAILBUS_SECRET_KEY or --secret-key-file (generate one with `head -c32 /dev/urandom | base64`), or run with --dev for a throwaway setup")
	}
	box, err := secretbox.New(keys...)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return &Store{cfg: cfg, log: cfg.Logger.With("service", serviceName), secrets: box}, nil
}

// Run runs the store until ctx ends.
func (s *Store) Run(ctx context.Context) error {
	cfg := s.cfg
	database, err := db.Open(ctx, db.Config{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Secrets: s.secrets, MaxMessageSize: cfg.MaxMessageSize})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer database.Close()
	s.log.Info("database ready", "backend", database.Dialect().String())
	authn, err := s.setUpAuth(ctx, database)
	if err != nil {
		return err
	}

	notifier := api.NewNotifier()
	// A request that is not valid protobuf is INVALID_ARGUMENT, not
	// grpc-go's INTERNAL.
	reject := serving.NewRejectMalformed()
	// The largest request: a message to append, with room for its fields.
	maxRequest := min(cfg.MaxMessageSize+1<<20, math.MaxUint32)
	pages, err := console.Handler()
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	srv, err := serving.New(serving.Config{
		Name: serviceName, Listen: cfg.Listen, Listener: cfg.Listener, MetricsListen: cfg.MetricsListen,
		Registry: cfg.Registry, Logger: s.log, TLS: cfg.TLS, Insecure: cfg.Insecure,
		ServerOptions: []grpc.ServerOption{
			grpc.MaxRecvMsgSize(int(maxRequest)),
			reject.ServerOption(),
			grpc.ChainUnaryInterceptor(authn.UnaryInterceptor()),
			grpc.ChainStreamInterceptor(authn.StreamInterceptor()),
		},
		// gRPC, Connect and gRPC-Web on the one port, all through the
		// same grpc.Server and its interceptors (decision 0031).
		Web: &serving.Web{CORSOrigins: cfg.CORSOrigins, Keepalive: cfg.Keepalive, MaxRequestBytes: uint32(maxRequest),
			// A call without a token that works is refused before its
			// body is read.
			Admit: authn.Admit,
			// The web console at "/" (decision 0032).
			Pages: pages},
	})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	// Cancelled when the store stops: live watches end then, so that the
	// graceful stop does not wait for them.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	services := reject.Registrar(srv.GRPC)
	if cfg.InProcess != nil {
		// The channel decodes nothing, so it needs no RejectMalformed.
		services = registrars{services, cfg.InProcess}
	}
	accountChanges := api.NewAccountChanges()
	// The API announces account changes where the database does not
	// (SQLite: one store process); on PostgreSQL the database announces
	// them to every replica, this one included (ListenAccountChanges).
	apiAccountChanges := accountChanges
	if database.AnnouncesAccountChanges() {
		apiAccountChanges = nil
	}
	mailbusv1.RegisterAccountServiceServer(services, &api.Accounts{DB: database, Log: s.log, Changes: apiAccountChanges, Discoverer: discover.New(s.cfg.Discover)})
	mailbusv1.RegisterMailboxServiceServer(services, &api.Mailboxes{DB: database, Log: s.log})
	mailbusv1.RegisterSyncServiceServer(services, &api.Sync{DB: database, Log: s.log, Notifier: notifier, PollInterval: cfg.WatchPollInterval, Stopping: ctx.Done()})
	ingestMetrics, err := api.NewIngestMetrics(cfg.Registry)
	if err != nil {
		return err
	}
	mailbusv1.RegisterIngestServiceServer(services, &api.Ingest{DB: database, Log: s.log, MaxMessageSize: cfg.MaxMessageSize, Metrics: ingestMetrics, AccountChanges: accountChanges, Stopping: ctx.Done()})
	mailbusv1.RegisterTokenServiceServer(services, &api.Tokens{DB: database, Log: s.log, Auth: authn})
	webhooks := cfg.Webhooks
	if webhooks == nil {
		webhooks = mailbusv1.UnimplementedWebhookServiceServer{}
	}
	mailbusv1.RegisterWebhookServiceServer(services, webhooks)
	if err := registerStoreMetrics(cfg.Registry, database); err != nil {
		return err
	}
	stopInProcess := func() {}
	if cfg.InProcess != nil {
		unary, stream := srv.Interceptors()
		stopInProcess = cfg.InProcess.Serve(inproc.ServeOptions{
			Unary:  append(slices.Clone(unary), authn.UnaryInterceptor()),
			Stream: append(slices.Clone(stream), authn.StreamInterceptor()),
			// The body path. Audited for sharing (decision 0045): the
			// handler keeps a request's data and meta in its batch and
			// changes neither; its responses are new for every answer;
			// pkg/ingest hands over chunk buffers it never reuses once it
			// sees SharesMessages on the stream.
			Shared: []string{mailbusv1.IngestService_IngestMessages_FullMethodName},
		})
		defer stopInProcess()
	}

	var wg sync.WaitGroup
	errc := make(chan error, 4)

	var rel *relay.Relay
	var nc *nats.Conn
	if cfg.NATSURL != "" {
		nc, err = s.connectNATS(cfg)
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(10*time.Second))
		if err != nil {
			return fmt.Errorf("store: jetstream: %w", err)
		}
		rel, err = relay.New(relay.Config{
			Outbox: database, Leader: database.Leader(), JetStream: js, Logger: s.log,
			Stream: cfg.Stream, Metrics: cfg.Registry,
		})
		if err != nil {
			return fmt.Errorf("store: %w", err)
		}
		// Events committed by other replicas wake this replica's watchers.
		subject := events.SubjectPrefix + ".>"
		if len(cfg.Stream.Subjects) > 0 {
			subject = cfg.Stream.Subjects[0]
		}
		if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
			if acct, _, err := events.ParseSubject(m.Subject); err == nil {
				notifier.Kick(acct)
			}
		}); err != nil {
			return fmt.Errorf("store: subscribe %s: %w", subject, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rel.Run(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("store: relay: %w", err)
			}
		}()
	} else {
		s.log.Warn("no NATS configured (--nats): events are kept in the outbox and not published")
	}
	database.OnCommit(func(accountIDs []string) {
		for _, id := range accountIDs {
			notifier.Kick(id)
		}
		if rel != nil {
			rel.Kick()
		}
	})

	wg.Add(1)
	go func() {
		defer wg.Done()
		s.pruneLoop(ctx, database)
	}()
	// On PostgreSQL, accounts changed through any replica reach this
	// replica's WatchAccounts streams. The store reports itself healthy
	// once it listens (or after listenWait), so that a change made through
	// another replica just after this one is ready is not missed.
	listening := make(chan struct{})
	var listeningOnce sync.Once
	wg.Add(1)
	go func() {
		defer wg.Done()
		database.ListenAccountChanges(ctx, s.log, func(id string, protocol mailbusv1.Protocol) {
			if id == "" {
				listeningOnce.Do(func() { close(listening) })
				accountChanges.Resync()
				return
			}
			accountChanges.Announce(protocol, id)
		})
	}()
	if database.AnnouncesAccountChanges() {
		select {
		case <-listening:
		case <-ctx.Done():
		case <-time.After(listenWait):
			s.log.Warn("not yet listening for account changes of other replicas; serving anyway (fetchers see them at their next account list)")
		}
	}

	// SERVING while the database and NATS answer, NOT_SERVING while one
	// does not: checked once now, then every ReadinessInterval.
	ready := &readiness{
		health: srv.Health, db: database, nc: nc, interval: cfg.ReadinessInterval, log: s.log,
		services: []string{"", mailbusv1.AccountService_ServiceDesc.ServiceName, mailbusv1.MailboxService_ServiceDesc.ServiceName, mailbusv1.SyncService_ServiceDesc.ServiceName, mailbusv1.IngestService_ServiceDesc.ServiceName, mailbusv1.TokenService_ServiceDesc.ServiceName},
	}
	ready.update(ctx)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ready.run(ctx)
	}()
	if cfg.Ready != nil {
		cfg.Ready(srv.Addr().String())
	}
	go func() {
		select {
		case err := <-errc:
			s.log.Error("stopping after a fatal error", "err", err)
			cancel()
			errc <- err
		case <-ctx.Done():
		}
	}()
	runErr := srv.Run(ctx)
	// In-process calls end with the network's: cancelled, waited for.
	stopInProcess()
	cancel()
	wg.Wait()
	s.log.Info("stopped")
	select {
	case err := <-errc:
		return err
	default:
	}
	return runErr
}

// registrars registers a service on each of its registrars.
type registrars []grpc.ServiceRegistrar

func (r registrars) RegisterService(desc *grpc.ServiceDesc, impl any) {
	for _, reg := range r {
		reg.RegisterService(desc, impl)
	}
}

// setUpAuth registers the bootstrap tokens and makes the authenticator.
func (s *Store) setUpAuth(ctx context.Context, database *db.DB) (*auth.Authenticator, error) {
	cfg := s.cfg
	for _, f := range []struct {
		path, name string
		role       mailbusv1.TokenRole
	}{
		{cfg.AdminTokenFile, "admin (" + AdminTokenFileName + ")", mailbusv1.TokenRole_TOKEN_ROLE_ADMIN},
		{cfg.ServiceTokenFile, "fetchers (service token file)", mailbusv1.TokenRole_TOKEN_ROLE_SERVICE},
	} {
		if f.path == "" {
			continue
		}
		created, err := auth.EnsureTokenFile(ctx, database, f.path, f.role, f.name)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		if created {
			s.log.Info("created an API token file; clients use it with --token-file or MAILBUS_TOKEN", "file", f.path, "role", f.role.String())
		}
	}
	if cfg.AdminTokenFile == "" {
		s.log.Warn("no admin token file (--admin-token-file): only tokens created earlier can manage accounts and tokens")
	}
	a, err := auth.New(auth.Config{Directory: database, ServiceToken: cfg.ServiceToken, RecheckInterval: cfg.AuthRecheckInterval, Logger: s.log})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return a, nil
}

func (s *Store) connectNATS(cfg Config) (*nats.Conn, error) {
	log := s.log.With("component", "nats")
	opts := append([]nats.Option{
		nats.Name("mailbus-store"),
		// Its NATS user may read only its own inboxes (pkg/natsperm).
		nats.CustomInboxPrefix(natsperm.InboxPrefix(natsperm.RoleStore)),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(natsReconnectWait),
		nats.ReconnectJitter(natsReconnectJitter, natsReconnectJitterTLS),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			// A nil error is our own close at shutdown.
			if err != nil {
				log.Warn("disconnected from NATS; events wait in the outbox", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted()) }),
	}, cfg.NATSOptions...)
	nc, err := nats.Connect(cfg.NATSURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("store: connect to NATS at %s: %w", envflag.Redact(cfg.NATSURL), err)
	}
	return nc, nil
}

func (s *Store) pruneLoop(ctx context.Context, database *db.DB) {
	t := time.NewTicker(s.cfg.PruneInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			res, err := database.Prune(ctx, s.cfg.Retention)
			if err != nil {
				s.log.Warn("retention pass failed; retrying next interval", "err", err)
				continue
			}
			if res.Events > 0 || res.Blobs > 0 {
				s.log.Info("retention pass", "events_pruned", res.Events, "blobs_pruned", res.Blobs)
			}
		}
	}
}

func registerStoreMetrics(reg *prometheus.Registry, database *db.DB) error {
	backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "mailbus_store_outbox_backlog", Help: "Events committed but not yet published to NATS.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		n, err := database.UnpublishedCount(ctx)
		if err != nil {
			return -1
		}
		return float64(n)
	})
	if err := reg.Register(backlog); err != nil {
		return fmt.Errorf("store: metrics: %w", err)
	}
	serving.RegisterProcessCollectors(reg)
	return nil
}
