// Package webhooks is the mailbus webhooks service: it delivers the events
// of MAILBUS_EVENTS to HTTP endpoints, signed, retried and in order per
// account (issue 13, decision 0027).
//
// Endpoints are kept in the JetStream KV bucket MAILBUS_WEBHOOKS (their
// signing secrets sealed with pkg/secretbox), so every replica sees every
// endpoint. Each endpoint reads MAILBUS_EVENTS through a durable consumer
// of its own, "webhook-<id>", filtered by the endpoint's accounts and
// kinds, with one message in flight (MaxAckPending 1): an event is acked
// only once it is delivered (a 2xx answer) or dead-lettered, so a restart
// loses nothing and resends nothing acknowledged, and the next event of
// the endpoint is not handed out before. Replicas share the consumers
// through a pinned-client priority group (nats-server 2.11 or later): one
// replica at a time works an endpoint, another takes over when it goes.
//
// A delivery POSTs a JSON mailbus.v1.WebhookPayload (the protojson Event
// and the content the endpoint asked for, fetched from the store) with the
// headers Content-Type, Mailbus-Event-Id, Mailbus-Event-Kind and
// Mailbus-Signature (pkg/webhooksig). Anything but a 2xx answer is retried
// with exponential backoff and jitter until the retry window (24 h by
// default) is over, then dead-lettered. Every attempt is recorded in the
// KV bucket MAILBUS_WEBHOOK_DELIVERIES (values expire after the delivery
// retention). Redeliver queues an event again through the work-queue
// stream MAILBUS_WEBHOOK_REDELIVERIES, which any replica may work.
//
// Redirects are never followed. Unless Config.AllowPrivate is set, a URL
// whose host is or resolves to a loopback, private or link-local address
// is refused when the endpoint is created or changed, and every connection
// is checked again on the address actually dialed (DNS rebinding).
//
// Use: New(cfg) checks the configuration; Run(ctx) connects to NATS and
// the store, delivers, and (unless Listen is "-") serves WebhookService,
// gRPC health and /metrics on its own ports; Server() is the
// WebhookService implementation to register on another gRPC server, such
// as the store's in mailbus serve (store.Config.Webhooks), whose
// interceptors then authenticate the calls.
package webhooks

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/pkg/serving"
)

// Defaults of Config.
const (
	DefaultListen            = "127.0.0.1:7430"
	DefaultMetricsListen     = "127.0.0.1:7431"
	DefaultRetryWindow       = 24 * time.Hour
	DefaultRetryMin          = 5 * time.Second
	DefaultRetryMax          = time.Hour
	DefaultRequestTimeout    = 10 * time.Second
	DefaultAckWait           = 60 * time.Second
	DefaultPinnedTTL         = 15 * time.Second
	DefaultDeliveryRetention = 7 * 24 * time.Hour
	// DefaultBodyCap is the cap on text and HTML bodies of an endpoint
	// that sets none (WebhookEndpoint.body_cap_bytes 0).
	DefaultBodyCap = 64 << 10
	// MaxBodyCap is the largest body_cap_bytes accepted.
	MaxBodyCap = 10 << 20
)

// Names in JetStream.
const (
	EndpointsBucket   = "MAILBUS_WEBHOOKS"
	DeliveriesBucket  = "MAILBUS_WEBHOOK_DELIVERIES"
	RedeliveryStream  = "MAILBUS_WEBHOOK_REDELIVERIES"
	redeliverySubject = "mailbus.webhooks.redeliver"
	redeliveryDurable = "webhooks-redeliver"
	consumerPrefix    = "webhook-"
	// priorityGroup is the pinned-client group of every endpoint
	// consumer (decision 0027).
	priorityGroup = "webhooks"
	serviceName   = "webhooks"
)

// Config configures the service. The zero value of a field means its
// default. NATSURL (or JetStream) and SecretKey are required; StoreAddr
// (or StoreConn) is needed to include message content and, for the
// service's own gRPC port, to check callers' tokens.
type Config struct {
	// NATSURL is the NATS server holding MAILBUS_EVENTS.
	NATSURL string
	// NATSOptions are added to the NATS connection's options.
	NATSOptions []nats.Option
	// StoreAddr is the store's gRPC address: message content is fetched
	// from it with Token, and callers' tokens are checked with it.
	StoreAddr string
	// StoreTLS, when set, dials StoreAddr over TLS.
	StoreTLS *tls.Config
	// StoreConn, when set, is used instead of dialing StoreAddr to fetch
	// content (it carries its own credentials, a service or admin token):
	// a gRPC connection, or mailbus serve's in-process channel
	// (pkg/inproc).
	StoreConn grpc.ClientConnInterface
	// Token is the API token sent to the store at StoreAddr to fetch
	// content: a service token (reads every account) or an admin token.
	Token string
	// Listen is the gRPC address (WebhookService, health, reflection);
	// "-" opens none (mailbus serve registers Server() on the store's
	// port instead).
	Listen string
	// Listener, when set, is used instead of Listen.
	Listener net.Listener
	// MetricsListen is the /metrics and /healthz address; "-" disables it.
	MetricsListen string
	// TLS, when set, serves gRPC over TLS; without it a non-loopback
	// Listen is refused unless Insecure is set (pkg/serving).
	TLS      *tls.Config
	Insecure bool
	// SecretKey seals the endpoints' signing secrets at rest (32 octets;
	// the store's key may be used); OldSecretKeys still open values
	// sealed under them.
	SecretKey     []byte
	OldSecretKeys [][]byte
	// AllowPrivate lets endpoints use loopback, private and link-local
	// addresses (--allow-private-webhooks; serve --dev and tests).
	AllowPrivate bool
	// RetryWindow is how long a delivery is retried before it is
	// dead-lettered; default 24h.
	RetryWindow time.Duration
	// RetryMin and RetryMax bound the backoff between attempts (doubled
	// after each failure, with equal jitter); defaults 5s and 1h.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds one POST (connect to the end of the answer's
	// headers); default 10s.
	RequestTimeout time.Duration
	// AckWait is the consumers' ack wait: how long after a replica
	// vanished (kill -9) another one gets its event in flight; the worker
	// extends it while it retries. Default 60s.
	AckWait time.Duration
	// PinnedTTL is how long a replica stays pinned to an endpoint without
	// pulling, the failover time after a replica vanished; default 15s.
	PinnedTTL time.Duration
	// DeliveryRetention is how long delivery records are kept after their
	// last change; default 7 days.
	DeliveryRetention time.Duration
	// KVReplicas is the number of replicas of the buckets and the
	// redelivery stream when they are created; default 1.
	KVReplicas int
	// Resolver resolves endpoint host names at creation; nil means
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// Registry collects metrics; nil means a new one.
	Registry *prometheus.Registry
	// Ready, if set, is called once the service works, with its gRPC
	// address ("" without one).
	Ready func(addr string)
}

// Service is the webhooks service.
type Service struct {
	cfg     Config
	log     *slog.Logger
	box     *secretbox.Box
	metrics *metrics
	client  *http.Client

	// ready is closed once Run has connected; the fields below are set
	// before.
	ready      chan struct{}
	readyOnce  sync.Once
	js         jetstream.JetStream
	endpoints  *endpointStore
	deliveries *deliveryStore
	redeliver  jetstream.Stream
	content    contentClient
	pinned     bool

	api *apiServer
}

// New checks the configuration.
func New(cfg Config) (*Service, error) {
	if cfg.NATSURL == "" {
		return nil, errors.New("webhooks: give the NATS server (--nats)")
	}
	if len(cfg.SecretKey) == 0 {
		return nil, errors.New("webhooks: no key to seal signing secrets: set --secret-key-file or MAILBUS_SECRET_KEY")
	}
	box, err := secretbox.New(append([][]byte{cfg.SecretKey}, cfg.OldSecretKeys...)...)
	if err != nil {
		return nil, fmt.Errorf("webhooks: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Listen == "" && cfg.Listener == nil {
		cfg.Listen = DefaultListen
	}
	if cfg.Listener == nil && cfg.Listen != serving.NoGRPC {
		if _, err := grpctls.CheckListen(cfg.Listen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("webhooks: --listen %w", err)
		}
	}
	switch cfg.MetricsListen {
	case "":
		cfg.MetricsListen = DefaultMetricsListen
	case "-":
		cfg.MetricsListen = ""
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.RetryWindow, DefaultRetryWindow)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.RequestTimeout, DefaultRequestTimeout)
	def(&cfg.AckWait, DefaultAckWait)
	def(&cfg.PinnedTTL, DefaultPinnedTTL)
	def(&cfg.DeliveryRetention, DefaultDeliveryRetention)
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = cfg.RetryMin
	}
	if cfg.KVReplicas < 1 {
		cfg.KVReplicas = 1
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	s := &Service{cfg: cfg, log: cfg.Logger.With("service", serviceName), box: box, metrics: m,
		client: newHTTPClient(cfg.AllowPrivate, cfg.RequestTimeout), ready: make(chan struct{})}
	s.api = &apiServer{s: s}
	return s, nil
}

// Server returns the WebhookService implementation, to register on a gRPC
// server whose interceptors admit admin tokens only (the store's, with
// store.Config.Webhooks). Its calls answer UNAVAILABLE until Run has
// connected to NATS.
func (s *Service) Server() mailbusv1.WebhookServiceServer { return s.api }

// Run runs the service until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	cfg := s.cfg
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Readiness follows the NATS connection: without it nothing is
	// delivered and the API cannot answer.
	var health readiness
	nc, err := nats.Connect(cfg.NATSURL, append([]nats.Option{
		nats.Name("mailbus-webhooks"), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(time.Second), nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { health.set(false) }),
		nats.ReconnectHandler(func(*nats.Conn) { health.set(true) }),
		nats.ConnectHandler(func(*nats.Conn) { health.set(true) }),
	}, cfg.NATSOptions...)...)
	if err != nil {
		return fmt.Errorf("webhooks: NATS: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("webhooks: JetStream: %w", err)
	}
	var storeConn grpc.ClientConnInterface
	var authConn *grpc.ClientConn
	if cfg.StoreAddr != "" {
		dialed, err := grpc.NewClient(cfg.StoreAddr, grpctls.Credentials(cfg.StoreTLS), apitoken.DialOption(cfg.Token))
		if err != nil {
			return fmt.Errorf("webhooks: store client: %w", err)
		}
		defer dialed.Close()
		storeConn = dialed
		// Callers' tokens are checked on a connection of their own: the
		// service token of storeConn would go along with them.
		if authConn, err = grpc.NewClient(cfg.StoreAddr, grpctls.Credentials(cfg.StoreTLS)); err != nil {
			return fmt.Errorf("webhooks: store client: %w", err)
		}
		defer authConn.Close()
	}
	if cfg.StoreConn != nil {
		storeConn = cfg.StoreConn
	}
	if storeConn != nil {
		s.content = mailbusv1.NewMailboxServiceClient(storeConn)
	}

	var srv *serving.Server
	if cfg.Listener != nil || cfg.Listen != serving.NoGRPC || cfg.MetricsListen != "" {
		check := newAdminCheck(authConn)
		srv, err = serving.New(serving.Config{Name: serviceName, Listen: cfg.Listen, Listener: cfg.Listener, MetricsListen: cfg.MetricsListen,
			Registry: cfg.Registry, Logger: s.log, TLS: cfg.TLS, Insecure: cfg.Insecure,
			ServerOptions: []grpc.ServerOption{grpc.ChainUnaryInterceptor(check.unaryInterceptor())}})
		if err != nil {
			return fmt.Errorf("webhooks: %w", err)
		}
		mailbusv1.RegisterWebhookServiceServer(srv.GRPC, s.api)
		srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	if srv != nil {
		wg.Go(func() {
			if err := srv.Run(ctx); err != nil {
				errc <- err
				cancel()
			}
		})
	}
	defer func() { cancel(); wg.Wait() }()
	if err := s.setUp(ctx, nc, js); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	if srv != nil {
		health.start(srv, s.log, nc.IsConnected())
	}
	addr := ""
	if srv != nil && srv.Addr() != nil {
		addr = srv.Addr().String()
	}
	s.log.Info("webhooks running", "addr", addr, "pinned_consumers", s.pinned, "allow_private", cfg.AllowPrivate)
	if cfg.Ready != nil {
		cfg.Ready(addr)
	}
	wg.Go(func() { s.redeliveries(ctx) })
	sup := &supervisor{s: s, workers: map[string]*worker{}}
	err = sup.run(ctx)
	cancel()
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// setUp makes the buckets and the redelivery stream, retrying while NATS
// is unreachable, and marks the service ready.
func (s *Service) setUp(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error {
	cfg := s.cfg
	delay := 100 * time.Millisecond
	for {
		err := s.ensureJetStream(ctx, js)
		if err == nil {
			break
		}
		s.log.Warn("JetStream not ready; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
	s.js = js
	s.pinned = supportsPinned(nc.ConnectedServerVersion())
	if !s.pinned {
		s.log.Warn("the NATS server is older than 2.11: endpoint consumers have no pinned-client group, so run one replica of mailbus-webhooks only", "server_version", nc.ConnectedServerVersion())
	}
	_ = cfg
	s.readyOnce.Do(func() { close(s.ready) })
	return nil
}

func (s *Service) ensureJetStream(ctx context.Context, js jetstream.JetStream) error {
	cfg := s.cfg
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	ekv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: EndpointsBucket, Description: "mailbus webhook endpoints", History: 1, Storage: jetstream.FileStorage, Replicas: cfg.KVReplicas})
	if err != nil {
		return fmt.Errorf("webhooks: bucket %s: %w", EndpointsBucket, err)
	}
	dkv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: DeliveriesBucket, Description: "mailbus webhook deliveries and their attempts", History: 1, TTL: cfg.DeliveryRetention, Storage: jetstream.FileStorage, Replicas: cfg.KVReplicas})
	if err != nil {
		return fmt.Errorf("webhooks: bucket %s: %w", DeliveriesBucket, err)
	}
	rs, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: RedeliveryStream, Description: "mailbus webhook deliveries to send again (Redeliver)",
		Subjects: []string{redeliverySubject + ".>"}, Retention: jetstream.WorkQueuePolicy, Storage: jetstream.FileStorage, Replicas: cfg.KVReplicas, MaxAge: cfg.DeliveryRetention})
	if err != nil {
		return fmt.Errorf("webhooks: stream %s: %w", RedeliveryStream, err)
	}
	s.endpoints, s.deliveries, s.redeliver = &endpointStore{kv: ekv}, &deliveryStore{kv: dkv}, rs
	return nil
}

// readiness sets the server's gRPC health (and so /readyz) from the NATS
// connection's state, once the service is set up.
type readiness struct {
	mu        sync.Mutex
	srv       *serving.Server
	log       *slog.Logger
	connected bool
}

func (r *readiness) start(srv *serving.Server, log *slog.Logger, connected bool) {
	r.mu.Lock()
	r.srv, r.log = srv, log
	r.mu.Unlock()
	r.set(connected)
}

func (r *readiness) set(connected bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	changed := r.connected != connected
	r.connected = connected
	if r.srv == nil {
		return
	}
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if connected {
		st = healthpb.HealthCheckResponse_SERVING
	}
	r.srv.Health.SetServingStatus("", st)
	r.srv.Health.SetServingStatus(mailbusv1.WebhookService_ServiceDesc.ServiceName, st)
	if changed {
		r.log.Info("readiness changed", "serving", connected)
	}
}

// supportsPinned reports whether a nats-server version has pinned-client
// priority groups (2.11 and later).
func supportsPinned(version string) bool {
	parts := strings.SplitN(strings.TrimPrefix(version, "v"), ".", 3)
	if len(parts) < 2 {
		return false
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return false
	}
	return major > 2 || major == 2 && minor >= 11
}

// waitReady waits until Run has connected, or answers why not.
func (s *Service) waitReady(ctx context.Context) error {
	select {
	case <-s.ready:
		return nil
	default:
	}
	select {
	case <-s.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(2 * time.Second):
		return errNotReady
	}
}

var errNotReady = errors.New("webhooks: not connected to NATS yet")
