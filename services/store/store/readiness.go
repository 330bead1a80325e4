package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// DefaultReadinessInterval is how often the store checks its database and
// NATS for its readiness (Config.ReadinessInterval): often enough that a
// probe every few seconds sees a change at its next try.
const DefaultReadinessInterval = time.Second

// pingTimeout bounds one check of the database: a database that does not
// answer within it counts as unreachable.
const pingTimeout = 2 * time.Second

// pinger is the database as readiness sees it.
type pinger interface {
	Ping(ctx context.Context) error
}

// readiness keeps the store's health state (gRPC health, and /readyz
// through it): SERVING while the database answers a ping and NATS, when
// configured, is connected; NOT_SERVING while either is unreachable, so
// that load balancers send calls elsewhere until it comes back. The
// process stays live (/healthz) meanwhile: the store recovers by itself
// (the relay keeps events in the outbox, the pool reconnects).
type readiness struct {
	health   *health.Server
	services []string // "" (the server) and each service name
	db       pinger
	nc       *nats.Conn // nil without NATS
	interval time.Duration
	log      *slog.Logger

	// reason is why the store was last not ready; "" when it was ready.
	// checked tells whether one check has run (the first one logs only
	// when it finds the store not ready).
	reason  string
	checked bool
}

// check returns nil when the database and NATS are reachable, else what is
// not.
func (r *readiness) check(ctx context.Context) error {
	var errs []error
	if r.nc != nil && !r.nc.IsConnected() {
		errs = append(errs, fmt.Errorf("NATS %s", r.nc.Status()))
	}
	ctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := r.db.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("database: %w", err))
	}
	return errors.Join(errs...)
}

// update runs one check and sets the health state from it, logging a
// change.
func (r *readiness) update(ctx context.Context) {
	err := r.check(ctx)
	if ctx.Err() != nil {
		return // stopping: Server.Run reports NOT_SERVING itself
	}
	status, reason := healthpb.HealthCheckResponse_SERVING, ""
	if err != nil {
		status, reason = healthpb.HealthCheckResponse_NOT_SERVING, err.Error()
	}
	for _, svc := range r.services {
		r.health.SetServingStatus(svc, status)
	}
	switch {
	case reason == r.reason && r.checked:
	case reason != "":
		r.log.Warn("not ready (NOT_SERVING): a dependency is unreachable", "reason", reason)
	case r.checked:
		r.log.Info("ready again (SERVING): the database and NATS answer")
	}
	r.reason, r.checked = reason, true
}

// run checks every interval, and at once when the NATS connection changes
// state, until ctx ends.
func (r *readiness) run(ctx context.Context) {
	var natsChanged <-chan nats.Status
	if r.nc != nil {
		ch := r.nc.StatusChanged()
		defer r.nc.RemoveStatusListener(ch)
		natsChanged = ch
	}
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-natsChanged:
		}
		r.update(ctx)
	}
}
