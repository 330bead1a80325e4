// Package serving runs a mailbus service's network endpoints the same way
// in every service: a gRPC server (with the standard health service, server
// reflection, request metrics and panic recovery) and an HTTP endpoint for
// Prometheus (/metrics), liveness (/healthz: the process answers) and
// readiness (/readyz: the gRPC health state of the server, which a service
// sets NOT_SERVING while it cannot do its work), all shut down gracefully
// when the context ends.
package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/grpctls"
)

// NoGRPC as Config.Listen serves no gRPC: the Server keeps its health
// state and metrics, and opens no port.
const NoGRPC = "-"

// Config configures a Server. Listen or Listener is required.
type Config struct {
	// Name is the service name, used as a metric label and in logs.
	Name string
	// Listen is the gRPC address, such as "127.0.0.1:7400"; NoGRPC ("-")
	// opens no gRPC listener (a service run inside another process, whose
	// health that process reports).
	Listen string
	// Listener, when set, is used instead of Listen (tests: 127.0.0.1:0).
	Listener net.Listener
	// MetricsListen is the HTTP address of /metrics, /healthz and /readyz; empty
	// disables it. It follows the rule of gRPC: with TLS it is served
	// over TLS with the same certificate (no client certificate asked);
	// in plaintext New refuses a non-loopback address unless Insecure.
	MetricsListen string
	// Registry collects the service's metrics; nil means a new one.
	Registry *prometheus.Registry
	// Logger receives logs; nil discards them.
	Logger *slog.Logger
	// ServerOptions are added to the gRPC server's options.
	ServerOptions []grpc.ServerOption
	// ShutdownTimeout bounds the graceful stop; 0 means 10s.
	ShutdownTimeout time.Duration
	// TLS, when set, serves gRPC over TLS with it (grpctls builds it from
	// the --tls-* flags). Without it, gRPC is plaintext, which New refuses
	// on a non-loopback address unless Insecure is set.
	TLS *tls.Config
	// Insecure allows plaintext gRPC and metrics on a non-loopback
	// address; it is logged as a warning at every start.
	Insecure bool
	// Web, when set, serves the listener through net/http, so that the
	// services answer Connect and gRPC-Web as well as gRPC (see Web).
	Web *Web
}

// Server is a service's gRPC and metrics endpoints.
type Server struct {
	// GRPC is the gRPC server; register services on it before Run.
	GRPC *grpc.Server
	// Health is the health service; set serving statuses on it.
	Health   *health.Server
	Registry *prometheus.Registry

	// unary and stream are the server's own interceptors (metrics, panic
	// recovery), outermost first.
	unary  []grpc.UnaryServerInterceptor
	stream []grpc.StreamServerInterceptor

	cfg       Config
	lis       net.Listener
	metricsLn net.Listener
	log       *slog.Logger
}

// New creates the servers and binds the listeners, so that Addr is known
// before Run.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	s := &Server{cfg: cfg, Registry: cfg.Registry, log: cfg.Logger}
	m, err := newMetrics(cfg.Registry, cfg.Name)
	if err != nil {
		return nil, err
	}
	listenAddr := cfg.Listen
	if cfg.Listener != nil {
		listenAddr = cfg.Listener.Addr().String()
	}
	noGRPC := cfg.Listener == nil && cfg.Listen == NoGRPC
	exposed := false
	if !noGRPC {
		if exposed, err = grpctls.CheckListen(listenAddr, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("serving: %s: %w", cfg.Name, err)
		}
	}
	if exposed {
		s.log.Warn("INSECURE: gRPC is served in plaintext on a non-loopback address (--insecure): anyone who can reach it can read and change mail; use --tls-cert and --tls-key", "listen", listenAddr)
	}
	if cfg.MetricsListen != "" {
		exposed, err := grpctls.CheckListen(cfg.MetricsListen, cfg.TLS != nil, cfg.Insecure)
		if err != nil {
			return nil, fmt.Errorf("serving: %s: --metrics-listen %w", cfg.Name, err)
		}
		if exposed {
			s.log.Warn("INSECURE: /metrics and /healthz are served in plaintext on a non-loopback address (--insecure); use --tls-cert and --tls-key", "metrics_listen", cfg.MetricsListen)
		}
	}
	s.unary = []grpc.UnaryServerInterceptor{m.unary, recoverUnary(s.log, m)}
	s.stream = []grpc.StreamServerInterceptor{m.stream, recoverStream(s.log, m)}
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unary...),
		grpc.ChainStreamInterceptor(s.stream...),
	}
	if cfg.Web != nil {
		// Counts what handlers receive, for recvGated.
		opts = append(opts, grpc.StatsHandler(recvCounter{}))
		opts = append(opts, cfg.Web.nativeOptions()...)
	}
	if cfg.TLS != nil && cfg.Web == nil {
		opts = append(opts, grpc.Creds(credentials.NewTLS(cfg.TLS)))
	}
	opts = append(opts, cfg.ServerOptions...)
	s.GRPC = grpc.NewServer(opts...)
	s.Health = health.NewServer()
	healthpb.RegisterHealthServer(s.GRPC, s.Health)
	reflection.Register(s.GRPC)

	s.lis = cfg.Listener
	if s.lis == nil && !noGRPC {
		if cfg.Listen == "" {
			return nil, errors.New("serving: no listen address")
		}
		if s.lis, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("serving: listen %s: %w", cfg.Listen, err)
		}
	}
	if cfg.MetricsListen != "" {
		if s.metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			if s.lis != nil {
				s.lis.Close()
			}
			return nil, fmt.Errorf("serving: metrics listen %s: %w", cfg.MetricsListen, err)
		}
		if cfg.TLS != nil {
			s.metricsLn = tls.NewListener(s.metricsLn, grpctls.WithoutClientAuth(cfg.TLS))
		}
	}
	return s, nil
}

// Interceptors are the server's own interceptors (request metrics, panic
// recovery), outermost first, which run before those of
// Config.ServerOptions: an in-process channel to the same services
// (pkg/inproc) runs them too, so that its calls are counted and
// recovered alike.
func (s *Server) Interceptors() ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	return s.unary, s.stream
}

// Addr is the gRPC listen address, or nil with NoGRPC.
func (s *Server) Addr() net.Addr {
	if s.lis == nil {
		return nil
	}
	return s.lis.Addr()
}

// MetricsAddr is the metrics listen address, or nil.
func (s *Server) MetricsAddr() net.Addr {
	if s.metricsLn == nil {
		return nil
	}
	return s.metricsLn.Addr()
}

// Run serves until ctx ends, then marks the service NOT_SERVING, stops
// taking new calls, waits up to the shutdown timeout for the running ones
// (streams are cancelled), and returns.
func (s *Server) Run(ctx context.Context) error {
	errc := make(chan error, 4)
	var webSrv *http.Server
	var split *splitter
	switch {
	case s.lis != nil && s.cfg.Web != nil:
		var err error
		if webSrv, err = s.webServer(); err != nil {
			s.lis.Close()
			return err
		}
		// TLS first, then each connection to grpc-go's transport (native
		// gRPC) or net/http (the rest) by its first request.
		split = newSplitter(webListener(s.lis, s.cfg.TLS))
		go func() { errc <- serveWeb(webSrv, split.web) }()
		go func() { errc <- serveNative(s.GRPC, split.grpc) }()
		go func() { errc <- split.serve() }()
	case s.lis != nil:
		go func() { errc <- s.GRPC.Serve(s.lis) }()
	}
	var httpSrv *http.Server
	if s.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(s.Registry, promhttp.HandlerOpts{}))
		// Liveness: the process answers. It does not follow the health
		// state, so that a dependency that is down (the store's
		// database or NATS) makes the service unready, not restarted.
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintln(w, "ok")
		})
		// Readiness: the server's gRPC health state ("").
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			resp, err := s.Health.Check(r.Context(), &healthpb.HealthCheckRequest{})
			if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
				http.Error(w, "not serving", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ok")
		})
		httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := httpSrv.Serve(s.metricsLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serving: metrics: %w", err)
			}
		}()
	}
	s.log.Info("serving", "grpc", addrString(s.Addr()), "connect", webSrv != nil, "tls", s.cfg.TLS != nil, "metrics", addrString(s.MetricsAddr()), "metrics_tls", s.cfg.TLS != nil && s.metricsLn != nil)
	var runErr error
	// (A server reports nil when a shared listener closed under it; only
	// an error ends the run.)
	for runErr == nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case runErr = <-errc:
		}
	}
	s.Health.Shutdown()
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	if webSrv != nil {
		// net/http's calls first: grpc-go's GracefulStop would cancel
		// those it serves through ServeHTTP at once.
		if !stopWeb(webSrv, s.cfg.ShutdownTimeout) {
			s.log.Warn("graceful stop timed out; closing open calls")
		}
	}
	stopped := make(chan struct{})
	go func() { s.GRPC.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(time.Until(deadline)):
		s.log.Warn("graceful stop timed out; closing open calls")
		s.GRPC.Stop()
		<-stopped
	}
	if split != nil {
		split.close()
	}
	if httpSrv != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		httpSrv.Shutdown(sctx)
		cancel()
	}
	return runErr
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

// RegisterProcessCollectors adds Go runtime and process metrics, with
// go_gc_heap_live_bytes (the heap the last collection found live: what
// the process holds, without the garbage that RSS and heap_inuse carry).
func RegisterProcessCollectors(reg prometheus.Registerer) {
	reg.MustRegister(collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$`)})),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	panics   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, service string) (*metrics, error) {
	labels := prometheus.Labels{"service": service}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailbus_grpc_requests_total", Help: "gRPC calls handled, by method and status code.", ConstLabels: labels,
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "mailbus_grpc_request_duration_seconds", Help: "Duration of unary gRPC calls.", ConstLabels: labels,
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"method"}),
		panics: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_panics_recovered_total", Help: "Panics recovered in gRPC handlers (each one is a bug).", ConstLabels: labels,
		}),
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.panics} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("serving: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.duration.WithLabelValues(info.FullMethod).Observe(time.Since(start).Seconds())
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.requests.WithLabelValues(info.FullMethod, status.Code(err).String()).Inc()
	return err
}

func recoverUnary(log *slog.Logger, m *metrics) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
		defer func() {
			if p := recover(); p != nil {
				m.panics.Inc()
				log.Error("panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(ctx, req)
	}
}

func recoverStream(log *slog.Logger, m *metrics) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
		defer func() {
			if p := recover(); p != nil {
				m.panics.Inc()
				log.Error("panic in handler", "method", info.FullMethod, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				err = status.Error(codes.Internal, "internal error")
			}
		}()
		return h(srv, ss)
	}
}

// PanicsRecovered reads the panic counter of a registry, for tests that
// fail when a handler panicked.
func PanicsRecovered(reg *prometheus.Registry) float64 {
	mfs, err := reg.Gather()
	if err != nil {
		return 0
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() == "mailbus_panics_recovered_total" {
			for _, m := range mf.Metric {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}
