package pop3fetcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/accountrun"
	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ingest"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/serving"
)

const serviceName = "pop3fetcher"

// Fetcher is the POP3 fetcher service.
type Fetcher struct {
	cfg      Config
	log      *slog.Logger
	conn     grpc.ClientConnInterface
	ownConn  *grpc.ClientConn // dialed by New, closed by Run
	accounts mailbusv1.AccountServiceClient
	ingest   mailbusv1.IngestServiceClient
	ingestc  *ingest.Client
	metrics  *metrics
	hosts    *hostlimit.Limiter

	mu  sync.Mutex
	mem map[string]*accountMemory
}

// New checks the configuration, registers the metrics and prepares the
// connection to the store (it connects lazily).
func New(cfg Config) (*Fetcher, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registry)
	if err != nil {
		return nil, err
	}
	f := &Fetcher{cfg: cfg, log: cfg.Logger.With("service", serviceName), metrics: m, mem: map[string]*accountMemory{}, hosts: hostlimit.New(cfg.HostLimit)}
	f.conn = cfg.Conn
	if f.conn == nil {
		f.ownConn, err = grpc.NewClient(cfg.Store, grpctls.Credentials(cfg.StoreTLS), apitoken.DialOption(cfg.Token))
		if err != nil {
			return nil, fmt.Errorf("pop3fetcher: store %s: %w", cfg.Store, err)
		}
		f.conn = f.ownConn
	}
	f.accounts = mailbusv1.NewAccountServiceClient(f.conn)
	f.ingest = mailbusv1.NewIngestServiceClient(f.conn)
	f.ingestc = ingest.New(f.ingest, ingest.Config{Timeout: cfg.StoreTimeout})
	return f, nil
}

// Run serves health and metrics and runs one worker per POP3 account of
// the store until ctx ends; then it stops every worker (each abandons its
// current message cleanly) and returns.
func (f *Fetcher) Run(ctx context.Context) error {
	if f.ownConn != nil {
		defer f.ownConn.Close()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	supCfg := accountrun.Config{
		Accounts: accountrun.FromClient(f.accounts),
		Changes:  f.ingest,
		Protocol: mailbusv1.Protocol_PROTOCOL_POP3,
		Work:     f.work,
		Refresh:  f.cfg.Refresh,
		Logger:   f.log,
	}
	var sup *accountrun.Supervisor
	ownDone := make(chan struct{})
	if f.cfg.Ownership == nil {
		sup = accountrun.New(supCfg)
		close(ownDone)
	} else {
		m, closeNATS, err := f.ownership(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while starting
			}
			return err
		}
		defer closeNATS()
		sup = m.Supervise(supCfg)
		go func() {
			defer close(ownDone)
			_ = m.Run(ctx)
		}()
	}
	srv, err := serving.New(serving.Config{
		Name: serviceName, Listen: f.cfg.Listen, Listener: f.cfg.Listener, MetricsListen: f.cfg.MetricsListen,
		Registry: f.cfg.Registry, Logger: f.log, TLS: f.cfg.TLS, Insecure: f.cfg.Insecure,
	})
	if err != nil {
		cancel()
		<-ownDone
		return fmt.Errorf("pop3fetcher: %w", err)
	}
	supDone := make(chan struct{})
	go func() {
		defer close(supDone)
		_ = sup.Run(ctx)
	}()
	srv.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	addr := ""
	if a := srv.Addr(); a != nil {
		addr = a.String()
	}
	f.log.Info("serving", "addr", addr, "store", f.storeTarget())
	if f.cfg.Ready != nil {
		f.cfg.Ready(addr)
	}
	runErr := srv.Run(ctx)
	cancel()
	<-supDone // every worker stopped and its lease released
	<-ownDone // the heartbeat deleted
	f.log.Info("stopped")
	return runErr
}

// ownership connects to NATS (unless Config.Ownership has a JetStream)
// and creates this replica's ownership Manager. The returned function
// closes the NATS connection.
func (f *Fetcher) ownership(ctx context.Context) (*ownership.Manager, func(), error) {
	cfg := *f.cfg.Ownership
	cfg.Service = serviceName
	if cfg.Logger == nil {
		cfg.Logger = f.log
	}
	if cfg.Registerer == nil {
		cfg.Registerer = f.cfg.Registry
	}
	closeNATS := func() {}
	if cfg.JetStream == nil {
		opts := append([]nats.Option{nats.Name("mailbus-pop3fetcher"), nats.CustomInboxPrefix(natsperm.InboxPrefix(natsperm.RolePOP3Fetcher)), nats.MaxReconnects(-1), nats.ReconnectWait(time.Second),
			nats.ReconnectJitter(500*time.Millisecond, time.Second), nats.RetryOnFailedConnect(true)}, f.cfg.NATSOptions...)
		nc, err := nats.Connect(f.cfg.NATSURL, opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("pop3fetcher: NATS %s: %w", f.cfg.NATSURL, err)
		}
		closeNATS = nc.Close
		if cfg.JetStream, err = jetstream.New(nc); err != nil {
			nc.Close()
			return nil, nil, fmt.Errorf("pop3fetcher: JetStream: %w", err)
		}
	}
	m, err := ownership.New(ctx, cfg)
	if err != nil {
		closeNATS()
		return nil, nil, fmt.Errorf("pop3fetcher: %w", err)
	}
	// A worker whose lease is lost must stop within the safety margin:
	// the work it may finish after its context ends has to fit in it.
	if limit := m.Config().SafetyMargin / 2; f.cfg.ShutdownGrace > limit {
		f.log.Info("shutdown grace shortened to half the lease safety margin", "grace", limit.String())
		f.cfg.ShutdownGrace = limit
	}
	f.log.Info("ownership on", "replica", m.ID(), "lease_ttl", m.Config().LeaseTTL.String())
	return m, closeNATS, nil
}

func (f *Fetcher) storeTarget() string {
	if f.cfg.Store != "" {
		return f.cfg.Store
	}
	if t, ok := f.conn.(interface{ Target() string }); ok {
		return t.Target()
	}
	return "in-process"
}

// RunOnce runs one poll pass for every POP3 account that is not parked,
// one after the other, and returns. It serves no health or metrics
// endpoint (the metrics still go to Config.Registry). The error joins the
// failed passes.
func (f *Fetcher) RunOnce(ctx context.Context) error {
	if f.ownConn != nil {
		defer f.ownConn.Close()
	}
	var accounts []*mailbusv1.Account
	token := ""
	for {
		lctx, cancel := context.WithTimeout(ctx, f.cfg.StoreTimeout)
		resp, err := f.accounts.ListAccounts(lctx, &mailbusv1.ListAccountsRequest{Protocol: mailbusv1.Protocol_PROTOCOL_POP3, PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return fmt.Errorf("pop3fetcher: list accounts: %w", err)
		}
		accounts = append(accounts, resp.Accounts...)
		if token = resp.NextPageToken; token == "" {
			break
		}
	}
	var errs []error
	for _, a := range accounts {
		if a.GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
			f.log.Warn("account is parked; skipped until it is updated", "account", a.Id, "name", a.Name, "reason", a.GetStatus().GetReason())
			continue
		}
		if a.InsecureSkipVerify {
			f.log.Warn("TLS certificate verification is OFF for this account (insecure_skip_verify)", "account", a.Id, "name", a.Name, "host", a.Host)
		}
		if err := f.claimOnce(ctx, a); err != nil {
			// Refused (token 0 after replicas with ownership worked the
			// account), or the store failed: not touching the server.
			errs = append(errs, fmt.Errorf("account %s (%s): %w", a.Id, a.Name, err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		res, err := f.Poll(ctx, a)
		if err != nil {
			errs = append(errs, fmt.Errorf("account %s (%s): %w", a.Id, a.Name, err))
			continue
		}
		f.log.Info("pass done", "account", a.Id, "name", a.Name, "new", res.New, "fetched", res.Fetched, "bytes", res.Bytes, "deleted", res.Deleted)
		if ctx.Err() != nil {
			break
		}
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// memory returns what the fetcher remembers of an account across the
// passes of one generation.
func (f *Fetcher) memory(a *mailbusv1.Account) *accountMemory {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.mem[a.Id]
	if m == nil || m.generation != a.Generation {
		m = &accountMemory{generation: a.Generation, refused: map[string]string{}, tooLarge: map[string]bool{}, oversized: map[string]int64{}, sameAs: map[string]int64{}, gone: map[string]bool{}}
		f.mem[a.Id] = m
	}
	return m
}

func (f *Fetcher) forget(a *mailbusv1.Account) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m := f.mem[a.Id]; m != nil && m.generation == a.Generation {
		delete(f.mem, a.Id)
	}
}
