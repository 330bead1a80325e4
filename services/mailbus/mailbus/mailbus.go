// Package mailbus is the all-in-one mailbus server: the store, imapsync and
// pop3fetcher services in one process, by default on an embedded NATS
// server with JetStream and an SQLite database in a data directory, so that
// a new user needs nothing installed or running beforehand.
//
// It runs the very same code as the separate services: it calls
// store.New/Run, imapsync.New/Run and pop3fetcher.New/Run with one shared
// gRPC connection to the store and one Prometheus registry (served on the
// store's metrics address).
//
// Data directory layout (Config.DataDir):
//
//	mailbus.db (+ -wal, -shm)   the SQLite store, unless DatabaseURL is set
//	blobs/                      its message bodies of 32 KiB and more, one
//	                            file per SHA-256 (part of the store: back
//	                            it up with mailbus.db)
//	secret.key                  the credentials key (mode 0600), created on
//	                            first start unless a key is given
//	admin.token                 an admin API token (mode 0600), created on
//	                            first start; the CLI reads it by default
//	nats/                       the embedded NATS server's JetStream files
//	nats-users.json             the events consumer users of the embedded
//	                            NATS server (bcrypt hashes), followed while
//	                            serve runs (decision 29); nats-users.applied
//	                            names the content applied
//	mailbus.lock                locked while a mailbus runs on the directory
//
// Config.NATSURL switches to an external NATS server and
// Config.DatabaseURL to PostgreSQL. Config.NATSListen makes the embedded
// NATS server also listen on TCP, for backend consumers of the events.
package mailbus

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/datadir"
	"github.com/mailbus/mailbus/pkg/discover"
	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/inproc"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/pkg/serving"
	"github.com/mailbus/mailbus/services/imapgw/imapgw"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
	"github.com/mailbus/mailbus/services/store/store"
	"github.com/mailbus/mailbus/services/webhooks/webhooks"
)

// Defaults.
const (
	DefaultDataDir = "./mailbus-data"
	// KeyFileName is the credentials key file created in the data
	// directory.
	KeyFileName = "secret.key"
	// LockFileName is the lock file that keeps a second mailbus off the
	// same data directory; it holds the process id.
	LockFileName = "mailbus.lock"
	// DefaultAccountRefresh is how often the fetchers read the account
	// list: short, because in one process the list is cheap to read and a
	// new account should start syncing at once.
	DefaultAccountRefresh = 2 * time.Second
	natsReadyTimeout      = 30 * time.Second
)

// Config configures the all-in-one server. The zero value of a field means
// its default.
type Config struct {
	// DataDir holds the SQLite database, the embedded NATS server's files
	// and the generated key; default ./mailbus-data.
	DataDir string
	// DatabaseURL selects PostgreSQL instead of SQLite.
	DatabaseURL string
	// NATSURL selects an external NATS server (with JetStream) instead of
	// the embedded one.
	NATSURL string
	// NATSListen, with the embedded NATS server, also serves NATS on this
	// TCP address ("127.0.0.1:4222") for backend consumers; empty serves
	// only this process. It has no TLS, so an address beyond loopback
	// needs Insecure.
	NATSListen string
	// Listen is the store's API address, gRPC, Connect and gRPC-Web
	// (default 127.0.0.1:7400); Listener, when set, is used instead.
	Listen   string
	Listener net.Listener
	// CORSOrigins are the browser origins allowed to call the store's API
	// from other origins (store.Config.CORSOrigins).
	CORSOrigins []string
	// MetricsListen is the /metrics and /healthz address of all three
	// services (default 127.0.0.1:7401); "-" disables it.
	MetricsListen string
	// TLS, when set, serves the store's gRPC over TLS (pkg/grpctls); the
	// fetchers in this process dial it pinned to its own certificate,
	// which they also present as client certificate. Without TLS a
	// non-loopback Listen is refused unless Insecure is set.
	TLS      *tls.Config
	Insecure bool
	// TLSCerts, when set (and TLS is not), is the reloadable certificate
	// of the store: Run reloads it on SIGHUP and when its files change,
	// and the fetchers' pinning follows.
	TLSCerts *grpctls.Certs
	// SecretKey is the credentials key; when nil, SecretKeyFile is read,
	// and when that is empty too, DataDir/secret.key is read or, on first
	// start, created with mode 0600.
	SecretKey     []byte
	SecretKeyFile string
	// OldSecretKeys open credentials sealed under earlier keys, until
	// `mailbus key rotate` has sealed them under the current one.
	OldSecretKeys [][]byte
	// AccountRefresh is how often imapsync and pop3fetcher read the
	// account list; default 2s.
	AccountRefresh time.Duration
	// Retention is how long the store keeps the change log (GetChanges,
	// WatchChanges replay); default the store's (7 days).
	Retention time.Duration
	// EventsReplicas and EventsMaxAge make the events stream when it is
	// missing (--events-replicas, --events-max-age; decision 0030): 0
	// means 1 replica, and the age limit Retention. An existing stream
	// keeps its own settings. More than one replica needs an external
	// NATS cluster (NATSURL).
	EventsReplicas int
	EventsMaxAge   time.Duration
	// MaxMessageSize is the largest message stored (and fetched by POP3
	// and IMAP); default the store's (64 MiB).
	MaxMessageSize int64
	// ExactListSizes names the POP3 servers (hosts, or "*") known to
	// report exact LIST sizes, as pop3fetcher.Config.ExactListSizes: a
	// message without a final line break is stored without the CRLF such
	// a server appends.
	ExactListSizes []string
	// WriteBackPoll is how often imapsync looks for pending write-backs
	// without a NATS wake-up; default imapsync's.
	WriteBackPoll time.Duration
	// AllowPrivateWebhooks lets webhook endpoints use loopback, private
	// and link-local addresses (webhooks.Config.AllowPrivate): for
	// development and tests (mailbus demo sets it), never where users
	// add endpoints that could reach the private network.
	AllowPrivateWebhooks bool
	// WebhookRetryWindow is how long a failing webhook delivery is
	// retried before it is dead-lettered; default the webhooks service's
	// (24 h).
	WebhookRetryWindow time.Duration
	// IMAPListen is the IMAP gateway's address; empty or "-" runs no
	// gateway (mailbus serve's --imap-listen defaults to
	// imapgw.DefaultListen, 127.0.0.1:7143). IMAPListener, when set, is
	// used instead. The gateway offers STARTTLS
	// with the store's certificate (TLS or TLSCerts); without it a
	// non-loopback address is refused unless Insecure is set.
	IMAPListen   string
	IMAPListener net.Listener
	// ServiceToken is the service token of the fetchers in this process,
	// accepted by the store without being stored (the only way to a
	// service token in serve: the API does not make them); empty means a
	// new random one for each start, known only to this process.
	ServiceToken string
	// NATSUsersPoll is how often the embedded NATS server reads the
	// data directory's users file for added and removed consumer users;
	// default DefaultNATSUsersPoll.
	NATSUsersPoll time.Duration
	// Discover configures the store's lookups for DiscoverSettings
	// (store.Config.Discover); the zero value asks the internet.
	Discover discover.Config
	// Logger receives the services' logs; nil discards them.
	Logger *slog.Logger
	// Ready, if set, is called once every service runs.
	Ready func(Info)
}

// Info describes a running server.
type Info struct {
	// StoreAddr is the store's gRPC address (the CLI's --server).
	StoreAddr string
	// ConsoleURL is the web console's address, the store's served over
	// HTTP: http://StoreAddr/, or https:// with TLS.
	ConsoleURL string
	// MetricsAddr is the /metrics address, or "" (none, or port 0: the
	// store's log line "serving" names the port).
	MetricsAddr string
	// NATSURL is where backend consumers subscribe: the external server's
	// URL, the embedded server's TCP URL with NATSListen, or "" (embedded,
	// in-process only).
	NATSURL string
	// KeyFile is the credentials key file, or "" for a key given directly.
	KeyFile string
	// KeyCreated is set when the key file was created by this start.
	KeyCreated bool
	// AdminTokenFile holds the admin API token the CLI uses
	// (DataDir/admin.token, created on first start).
	AdminTokenFile string
	// Database is "sqlite <path>" or "postgres".
	Database string
	// AllowPrivateWebhooks is Config.AllowPrivateWebhooks.
	AllowPrivateWebhooks bool
	// IMAPAddr is the IMAP gateway's address, or "" when it is off.
	IMAPAddr string
	// IMAPTLS is set when the gateway offers STARTTLS.
	IMAPTLS bool
}

// Server is the all-in-one server.
type Server struct {
	cfg Config
	log *slog.Logger
}

// New checks the configuration.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		cfg.DataDir = DefaultDataDir
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" && cfg.Listener == nil {
		cfg.Listen = store.DefaultListen
	}
	if cfg.MetricsListen == "" {
		cfg.MetricsListen = store.DefaultMetricsListen
	}
	if cfg.IMAPListen == "" {
		cfg.IMAPListen = "-"
	}
	if cfg.TLS == nil && cfg.TLSCerts != nil {
		cfg.TLS = cfg.TLSCerts.TLSConfig()
	}
	if cfg.AccountRefresh <= 0 {
		cfg.AccountRefresh = DefaultAccountRefresh
	}
	if cfg.NATSUsersPoll <= 0 {
		cfg.NATSUsersPoll = DefaultNATSUsersPoll
	}
	if cfg.Listener == nil {
		if _, err := grpctls.CheckListen(cfg.Listen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("mailbus: --listen %w", err)
		}
	}
	if cfg.MetricsListen != "" && cfg.MetricsListen != "-" {
		if _, err := grpctls.CheckListen(cfg.MetricsListen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("mailbus: --metrics-listen %w", err)
		}
	}
	if cfg.IMAPListener == nil && cfg.IMAPListen != "-" {
		if _, err := grpctls.CheckListen(cfg.IMAPListen, cfg.TLS != nil || cfg.TLSCerts != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("mailbus: --imap-listen %w", err)
		}
	}
	if cfg.NATSURL != "" && cfg.NATSListen != "" {
		return nil, errors.New("mailbus: --nats-listen is for the embedded NATS server; with --nats the external server serves consumers")
	}
	if cfg.NATSListen != "" {
		if _, _, err := splitHostPort(cfg.NATSListen); err != nil {
			return nil, fmt.Errorf("mailbus: --nats-listen %q: %w", cfg.NATSListen, err)
		}
		// The embedded NATS server has no TLS: its passwords and events
		// cross the network in plaintext beyond loopback.
		if !grpctls.IsLoopback(cfg.NATSListen) && !cfg.Insecure {
			return nil, fmt.Errorf("mailbus: --nats-listen %s: the embedded NATS server speaks plaintext only; keep it on loopback, or start with --insecure on a private network", cfg.NATSListen)
		}
	}
	return &Server{cfg: cfg, log: cfg.Logger}, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q: want 0 to 65535", p)
	}
	return host, port, nil
}

// key returns the credentials key, creating the key file on first start.
func (s *Server) key(info *Info) ([]byte, error) {
	cfg := s.cfg
	if cfg.SecretKey != nil {
		return cfg.SecretKey, nil
	}
	path := cfg.SecretKeyFile
	if path != "" {
		info.KeyFile = path
		return secretbox.LoadKeyFile(path)
	}
	path = filepath.Join(cfg.DataDir, KeyFileName)
	info.KeyFile = path
	k, err := secretbox.LoadKeyFile(path)
	if err == nil {
		return k, nil
	}
	if _, statErr := os.Stat(path); !errors.Is(statErr, os.ErrNotExist) {
		return nil, err
	}
	if k, err = secretbox.GenerateKey(); err != nil {
		return nil, err
	}
	if err := secretbox.WriteKeyFile(path, k); err != nil {
		return nil, err
	}
	info.KeyCreated = true
	s.log.Info("created the credentials key; keep it with the data (it decrypts the stored passwords)", "file", path)
	return k, nil
}

// Run runs the services until ctx ends, then stops them in order (the
// fetchers, the store, NATS) and returns.
func (s *Server) Run(ctx context.Context) error {
	cfg := s.cfg
	var info Info
	if err := datadir.Ensure(cfg.DataDir); err != nil {
		return fmt.Errorf("mailbus: %w", err)
	}
	release, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return fmt.Errorf("mailbus: %w", err)
	}
	defer release()
	// New connections get a renewed certificate (SIGHUP or a change of
	// the files); established ones keep theirs.
	cfg.TLSCerts.Watch(ctx, grpctls.WatchOptions{Logger: s.log})
	key, err := s.key(&info)
	if err != nil {
		return fmt.Errorf("mailbus: credentials key: %w", err)
	}

	natsURL := cfg.NATSURL
	var natsOpts, storeNATS, imapNATS []nats.Option
	// The webhooks service's replies come to its own inboxes, the only
	// ones its NATS user may read (pkg/natsperm).
	webhooksNATS := []nats.Option{nats.CustomInboxPrefix(natsperm.InboxPrefix(natsperm.RoleWebhooks))}
	if natsURL == "" {
		embedded, err := s.startNATS(ctx)
		if err != nil {
			return err
		}
		defer embedded.shutdown()
		ns := embedded.ns
		storeNATS = []nats.Option{embedded.credentials(natsperm.RoleStore)}
		imapNATS = []nats.Option{embedded.credentials(natsperm.RoleIMAPSync)}
		webhooksNATS = append(webhooksNATS, embedded.credentials(natsperm.RoleWebhooks))
		natsURL = ns.ClientURL()
		log := s.log.With("service", "store", "component", "nats")
		natsOpts = []nats.Option{
			nats.InProcessServer(ns),
			// In one process the connection closes only at shutdown, and
			// nats.go reports that close as a disconnect (err nil): not
			// worth the store's warning.
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					log.Warn("disconnected from NATS; events wait in the outbox", "err", err)
				}
			}),
		}
		if cfg.NATSListen != "" {
			info.NATSURL = natsURL
		}
	} else {
		info.NATSURL = envflag.Redact(natsURL)
	}
	if cfg.DatabaseURL != "" {
		info.Database = "postgres"
	} else {
		info.Database = "sqlite " + filepath.Join(cfg.DataDir, "mailbus.db")
	}

	// The fetchers in this process authenticate with a service token that
	// lives only as long as the process; the CLI uses the admin token file.
	serviceToken := cfg.ServiceToken
	if serviceToken == "" {
		if serviceToken, _, err = apitoken.Generate(); err != nil {
			return fmt.Errorf("mailbus: %w", err)
		}
	}
	info.AdminTokenFile = filepath.Join(cfg.DataDir, store.AdminTokenFileName)
	info.AllowPrivateWebhooks = cfg.AllowPrivateWebhooks

	// The store's listener is opened here, so that its address is known
	// before the store starts: the webhooks service, which the store
	// serves, is made with the connection to it.
	ln := cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return fmt.Errorf("mailbus: store: %w (is another mailbus running? choose other addresses with --listen and --metrics-listen)", err)
			}
			return fmt.Errorf("mailbus: store: %w", err)
		}
	}
	defer ln.Close()
	// The services in this process reach the store on an in-process
	// channel: no TCP, no protobuf encoding, the same interceptors
	// (tokens, their rules, metrics) as on the port (decision 0045).
	// The IMAP gateway alone dials the port, with its clients' tokens.
	inProcess := inproc.New()
	conn := inProcess.Conn(apitoken.Credentials(serviceToken))

	reg := prometheus.NewRegistry()
	// The webhooks service serves no port of its own: the store serves its
	// WebhookService behind the store's authentication (admin tokens), and
	// its metrics are in the shared registry. It seals the endpoints'
	// secrets with the credentials key.
	hooksReady := make(chan struct{})
	hooks, err := webhooks.New(webhooks.Config{
		NATSURL: natsURL, NATSOptions: append(slices.Clone(natsOpts), webhooksNATS...), StoreConn: conn,
		Listen: serving.NoGRPC, MetricsListen: "-", SecretKey: key, OldSecretKeys: cfg.OldSecretKeys,
		AllowPrivate: cfg.AllowPrivateWebhooks, RetryWindow: cfg.WebhookRetryWindow, Logger: s.log, Registry: reg,
		Ready: func(string) { close(hooksReady) },
	})
	if err != nil {
		return fmt.Errorf("mailbus: %w", err)
	}
	storeReady := make(chan string, 1)
	st, err := store.New(store.Config{
		AdminTokenFile: info.AdminTokenFile, ServiceToken: serviceToken,
		Listener: ln, MetricsListen: cfg.MetricsListen,
		TLS: cfg.TLS, Insecure: cfg.Insecure, CORSOrigins: cfg.CORSOrigins,
		NATSURL: natsURL, NATSOptions: append(slices.Clone(natsOpts), storeNATS...),
		DataDir: cfg.DataDir, DatabaseURL: cfg.DatabaseURL, SecretKey: key, OldSecretKeys: cfg.OldSecretKeys,
		Retention: cfg.Retention, MaxMessageSize: cfg.MaxMessageSize,
		EventsReplicas: cfg.EventsReplicas, EventsMaxAge: cfg.EventsMaxAge,
		Logger: s.log, Registry: reg, Webhooks: hooks.Server(), Discover: cfg.Discover,
		InProcess: inProcess,
		Ready:     func(addr string) { storeReady <- addr },
	})
	if err != nil {
		return fmt.Errorf("mailbus: %w", err)
	}
	storeCtx, stopStore := context.WithCancel(context.WithoutCancel(ctx))
	defer stopStore()
	storeDone := make(chan error, 1)
	go func() { storeDone <- st.Run(storeCtx) }()
	select {
	case info.StoreAddr = <-storeReady:
		info.ConsoleURL = consoleURL(info.StoreAddr, cfg.TLS != nil || cfg.TLSCerts != nil)
	case err := <-storeDone:
		if err == nil {
			err = errors.New("store: stopped before it served")
		}
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("mailbus: %w (is another mailbus running? choose other addresses with --listen and --metrics-listen)", err)
		}
		return fmt.Errorf("mailbus: %w", err)
	case <-ctx.Done():
		stopStore()
		<-storeDone
		return nil
	}
	// A port 0 is known only to the store's listener, which names it in
	// its log line "serving": no address here rather than a wrong one.
	if _, port, err := net.SplitHostPort(cfg.MetricsListen); cfg.MetricsListen != "-" && (err != nil || port != "0") {
		info.MetricsAddr = cfg.MetricsListen
	}

	fetchCtx, stopFetchers := context.WithCancel(ctx)
	defer stopFetchers()
	errc := make(chan error, 4)
	var wg sync.WaitGroup
	runService := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(fetchCtx); err != nil && fetchCtx.Err() == nil {
				errc <- fmt.Errorf("mailbus: %s: %w", name, err)
			}
		}()
	}
	// The fetchers open no port of their own: their metrics are in the
	// shared registry, and the store's health service speaks for the
	// process.
	imap, err := imapsync.New(imapsync.Config{
		StoreConn: conn, Listen: serving.NoGRPC, MetricsListen: "-", NATSURL: natsURL, NATSOptions: append(slices.Clone(natsOpts), imapNATS...),
		Logger: s.log, Registry: reg, AccountRefresh: cfg.AccountRefresh, WriteBackPoll: cfg.WriteBackPoll,
		MaxMessageSize: cfg.MaxMessageSize,
	})
	if err != nil {
		stopStore()
		<-storeDone
		return fmt.Errorf("mailbus: %w", err)
	}
	pop, err := pop3fetcher.New(pop3fetcher.Config{
		Conn: conn, Listen: serving.NoGRPC, MetricsListen: "-", Logger: s.log, Registry: reg, Refresh: cfg.AccountRefresh,
		MaxMessageSize: cfg.MaxMessageSize, ExactListSizes: cfg.ExactListSizes,
	})
	if err != nil {
		stopStore()
		<-storeDone
		return fmt.Errorf("mailbus: %w", err)
	}
	runService("imapsync", imap.Run)
	runService("pop3fetcher", pop.Run)
	runService("webhooks", hooks.Run)
	gwReady, err := s.startIMAPGateway(info.StoreAddr, runService, &info)
	if err != nil {
		stopFetchers()
		wg.Wait()
		stopStore()
		<-storeDone
		return err
	}

	// Ready once the webhooks service has its buckets: before, the
	// webhook commands would be answered UNAVAILABLE.
	webhooksReady := hooksReady
	// With a gateway, also once it serves (info.IMAPAddr is set then).
	waiting := 1
	if gwReady != nil {
		waiting++
	}
	announce := func() {
		if waiting--; waiting > 0 {
			return
		}
		s.log.Info("mailbus running", "store", info.StoreAddr, "imap", info.IMAPAddr, "database", info.Database, "nats", natsDescription(info, cfg))
		if cfg.Ready != nil {
			cfg.Ready(info)
		}
	}
	var runErr error
wait:
	for {
		select {
		case <-gwReady:
			gwReady = nil
			announce()
		case <-webhooksReady:
			webhooksReady = nil
			announce()
		case <-ctx.Done():
			break wait
		case runErr = <-errc:
			s.log.Error("stopping after a fatal error", "err", runErr)
			break wait
		case runErr = <-storeDone:
			if runErr == nil {
				runErr = errors.New("mailbus: the store stopped")
			}
			s.log.Error("stopping: the store stopped", "err", runErr)
			stopFetchers()
			wg.Wait()
			return runErr
		}
	}
	stopFetchers()
	wg.Wait()
	stopStore()
	if err := <-storeDone; err != nil && runErr == nil {
		runErr = fmt.Errorf("mailbus: store: %w", err)
	}
	s.log.Info("mailbus stopped")
	return runErr
}

// startIMAPGateway runs the IMAP gateway (unless IMAPListen is "-") on a
// connection to the store without a token of its own: each call carries
// the mail client's token. The returned channel is closed once it serves
// (nil without a gateway).
func (s *Server) startIMAPGateway(storeAddr string, runService func(string, func(context.Context) error), info *Info) (<-chan struct{}, error) {
	cfg := s.cfg
	if cfg.IMAPListener == nil && cfg.IMAPListen == "-" {
		return nil, nil
	}
	conn, err := s.storeConn(storeAddr, "")
	if err != nil {
		return nil, err
	}
	var imapTLS *tls.Config
	switch {
	case cfg.TLSCerts != nil:
		imapTLS = imapgw.ServerTLS(cfg.TLSCerts.TLSConfig())
	case cfg.TLS != nil:
		imapTLS = imapgw.ServerTLS(cfg.TLS)
	}
	ready := make(chan struct{})
	gw, err := imapgw.New(imapgw.Config{
		StoreConn: conn, Listen: cfg.IMAPListen, Listener: cfg.IMAPListener, TLS: imapTLS, Insecure: cfg.Insecure,
		MaxMessageSize: cfg.MaxMessageSize, Logger: s.log,
		Ready: func(addr, _ string) { info.IMAPAddr = addr; close(ready) },
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("mailbus: %w", err)
	}
	info.IMAPTLS = imapTLS != nil
	runService("imap gateway", func(ctx context.Context) error {
		defer conn.Close()
		err := gw.Run(ctx)
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("%w (is another mailbus running? choose another address with --imap-listen, or - for none)", err)
		}
		return err
	})
	return ready, nil
}

// storeConn is a connection to the store's port at addr (the IMAP
// gateway's, whose calls carry its clients' tokens; the other services
// use the in-process channel), with token when set: over TLS pinned to
// the store's own certificate when it serves TLS. It connects lazily.
func (s *Server) storeConn(addr, token string) (*grpc.ClientConn, error) {
	cfg := s.cfg
	var internalTLS *tls.Config
	if cfg.TLSCerts != nil {
		internalTLS = grpctls.PinnedTo(cfg.TLSCerts)
	} else if cfg.TLS != nil && len(cfg.TLS.Certificates) > 0 {
		var err error
		if internalTLS, err = grpctls.Pinned(cfg.TLS.Certificates[0]); err != nil {
			return nil, fmt.Errorf("mailbus: store client: %w", err)
		}
	}
	opts := []grpc.DialOption{grpctls.Credentials(internalTLS),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20), grpc.MaxCallSendMsgSize(256<<20))}
	if token != "" {
		opts = append(opts, apitoken.DialOption(token))
	}
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("mailbus: store client: %w", err)
	}
	return conn, nil
}

func natsDescription(info Info, cfg Config) string {
	switch {
	case cfg.NATSURL != "":
		return info.NATSURL
	case info.NATSURL != "":
		return "embedded, " + info.NATSURL
	}
	return "embedded (in-process; --nats-listen serves consumers)"
}

// startNATS starts the embedded NATS server with JetStream and the users
// of pkg/natsperm (decision 17): a user per service with a password made
// now, and the consumer users of the data directory's users file, whose
// consumers it creates.
func (s *Server) startNATS(ctx context.Context) (*embeddedNATS, error) {
	e := &embeddedNATS{
		base: server.Options{
			ServerName: "mailbus",
			JetStream:  true,
			StoreDir:   filepath.Join(s.cfg.DataDir, "nats"),
			NoSigs:     true,
			NoLog:      true,
			DontListen: s.cfg.NATSListen == "",
		},
		passwords: map[string]string{},
		logins:    newNATSLogins(),
		granted:   map[string]grantedUser{},
		dataDir:   s.cfg.DataDir,
		log:       s.log.With("component", "nats"),
		stream:    store.EventsStream(1, s.cfg.EventsMaxAge, s.cfg.Retention),
	}
	if s.cfg.NATSListen != "" {
		host, port, _ := splitHostPort(s.cfg.NATSListen)
		e.base.Host, e.base.Port = host, port
		if port == 0 {
			e.base.Port = server.RANDOM_PORT
		}
	}
	for _, role := range natsperm.Roles {
		pw, err := NewNATSPassword()
		if err != nil {
			return nil, err
		}
		e.passwords[role] = pw
	}
	opts, err := e.options()
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("mailbus: embedded NATS: %w", err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(natsReadyTimeout) {
		ns.Shutdown()
		if s.cfg.NATSListen != "" {
			return nil, fmt.Errorf("mailbus: embedded NATS did not start (is %s free?)", s.cfg.NATSListen)
		}
		return nil, errors.New("mailbus: embedded NATS did not start")
	}
	e.ns = ns
	if err := e.addServiceLogins(); err != nil {
		e.shutdown()
		return nil, err
	}
	if e.admin, err = nats.Connect(ns.ClientURL(), nats.InProcessServer(ns), e.credentials(natsperm.RoleStore), nats.CustomInboxPrefix(natsperm.InboxPrefix(natsperm.RoleStore)), nats.Name("mailbus-serve-consumers")); err != nil {
		e.shutdown()
		return nil, fmt.Errorf("mailbus: embedded NATS: %w", err)
	}
	// The users file as it is now is applied before serve runs (an error
	// stops it), and its changes while it runs (decision 29).
	data, users, err := e.readUsers()
	if err != nil {
		e.shutdown()
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, natsReadyTimeout)
	defer cancel()
	if err := e.apply(cctx, users); err != nil {
		e.shutdown()
		return nil, err
	}
	e.noteApplied(data)
	e.watchUsers(s.cfg.NATSUsersPoll, data)
	return e, nil
}

// consoleURL is the web console's address on the store's listener.
func consoleURL(storeAddr string, withTLS bool) string {
	if withTLS {
		return "https://" + storeAddr + "/"
	}
	return "http://" + storeAddr + "/"
}
