package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailbus/mailbus/pkg/events"
)

// Defaults for Config fields left zero.
const (
	// DefaultBatchSize bounds one pass: large enough to amortise the
	// outbox queries over many events, small enough that a failed batch is
	// cheap to republish.
	DefaultBatchSize = 256
	// DefaultPollInterval is how often an idle relay looks at the outbox
	// without a Kick, catching events committed by another replica or
	// while a Kick was lost.
	DefaultPollInterval = time.Second
	// DefaultAckTimeout is how long one pass waits for the acks of its
	// batch, and how long the stream check may take.
	DefaultAckTimeout = 10 * time.Second
)

// Config configures a Relay. Outbox and JetStream are required; every other
// zero field means its default.
type Config struct {
	// Outbox is the store's outbox.
	Outbox Outbox
	// Leader decides which of several store replicas publishes; nil means
	// this relay always leads (a single process, SQLite).
	Leader Leader
	// JetStream publishes. Give it jetstream.WithPublishAsyncTimeout so
	// that the client forgets acks that never come; the relay itself stops
	// waiting after AckTimeout either way.
	JetStream jetstream.JetStream
	// Logger receives the relay's structured logs; nil discards them.
	Logger *slog.Logger
	// BatchSize is the most events one pass reads and publishes; 0 means
	// DefaultBatchSize.
	BatchSize int
	// PollInterval is how often an idle relay looks at the outbox when no
	// Kick comes; 0 means DefaultPollInterval.
	PollInterval time.Duration
	// AckTimeout bounds the wait for a batch's acks; 0 means
	// DefaultAckTimeout.
	AckTimeout time.Duration
	// Stream is the stream the relay ensures (events.EnsureStream) when it
	// becomes leader and after a failed publish: created with it when
	// missing; when it exists, only its missing subjects are added, and
	// where its settings differ from Stream the relay logs a warning and
	// keeps them (the operator owns the stream, decision 0030). An empty
	// Stream.Name means events.StreamConfig(1, 0, 0): events.StreamName on
	// "mailbus.events.>", one replica, no age limit, the default
	// duplicates window. Tests set a stream name and subjects of their
	// own. Published subjects must fall under Stream.Subjects.
	Stream jetstream.StreamConfig
	// Metrics registers the relay's metrics (mailbus_relay_*); nil means
	// they are kept but not registered.
	Metrics prometheus.Registerer
}

// Relay publishes the outbox to JetStream. Create it with New.
type Relay struct {
	outbox       Outbox
	leader       Leader
	js           jetstream.JetStream
	log          *slog.Logger
	batchSize    int
	pollInterval time.Duration
	ackTimeout   time.Duration
	stream       jetstream.StreamConfig
	m            *metrics
	kick         chan struct{}
	running      atomic.Bool
	// drift is the last difference between the stream and stream that
	// was logged, so that each is logged once, not at every check.
	drift string
}

// New checks cfg, fills in its defaults and registers the metrics.
func New(cfg Config) (*Relay, error) {
	if cfg.Outbox == nil {
		return nil, errors.New("relay: config: no Outbox")
	}
	if cfg.JetStream == nil {
		return nil, errors.New("relay: config: no JetStream")
	}
	if cfg.BatchSize < 0 || cfg.PollInterval < 0 || cfg.AckTimeout < 0 {
		return nil, errors.New("relay: config: negative BatchSize, PollInterval or AckTimeout")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.AckTimeout == 0 {
		cfg.AckTimeout = DefaultAckTimeout
	}
	if cfg.Stream.Name == "" {
		cfg.Stream = events.StreamConfig(1, 0, 0)
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	return &Relay{
		outbox:       cfg.Outbox,
		leader:       cfg.Leader,
		js:           cfg.JetStream,
		log:          cfg.Logger.With("component", "relay", "stream", cfg.Stream.Name),
		batchSize:    cfg.BatchSize,
		pollInterval: cfg.PollInterval,
		ackTimeout:   cfg.AckTimeout,
		stream:       cfg.Stream,
		m:            m,
		kick:         make(chan struct{}, 1),
	}, nil
}

// Kick wakes an idle relay to look at the outbox now. It never blocks; the
// store calls it after each commit that wrote events.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run publishes the outbox until ctx ends, then returns nil. It waits for
// leadership, ensures the stream, and publishes batch after batch; when the
// outbox is empty it waits for a Kick, PollInterval or the end of ctx. Every
// failure is logged and retried with backoff (see the package doc). Run must
// not be called again while it runs.
func (r *Relay) Run(ctx context.Context) error {
	if !r.running.CompareAndSwap(false, true) {
		return errors.New("relay: run: already running")
	}
	defer r.running.Store(false)

	// A reconnect ends a backoff early: NATS is back, so try now.
	var reconnected <-chan nats.Status
	if nc := r.js.Conn(); nc != nil {
		ch := nc.StatusChanged(nats.CONNECTED)
		defer nc.RemoveStatusListener(ch)
		reconnected = ch
	}

	var bo backoff
	for ctx.Err() == nil {
		leadCtx, release, err := r.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			d := bo.delay()
			r.log.Warn("relay: acquire leadership failed", "err", err, "retry_in", d)
			sleep(ctx, d, nil)
			continue
		}
		r.log.Info("relay: leading")
		r.m.leader.Set(1)
		start := time.Now()
		r.lead(leadCtx, reconnected)
		r.m.leader.Set(0)
		release()
		if ctx.Err() != nil {
			break
		}
		// A leadership that lasted is no failure; one lost at once again
		// and again is, and must not spin.
		if time.Since(start) > backoffMax {
			bo.reset()
		}
		d := bo.delay()
		r.log.Warn("relay: leadership lost", "led_for", time.Since(start), "acquire_in", d)
		sleep(ctx, d, nil)
	}
	r.log.Info("relay: stopped")
	return nil
}

func (r *Relay) acquire(ctx context.Context) (context.Context, func(), error) {
	if r.leader == nil {
		return ctx, func() {}, nil
	}
	leadCtx, release, err := r.leader.Acquire(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("relay: acquire leadership: %w", err)
	}
	return leadCtx, release, nil
}

// lead publishes while ctx, the leadership, lasts.
func (r *Relay) lead(ctx context.Context, reconnected <-chan nats.Status) {
	var bo backoff
	streamOK := false
	poll := time.NewTimer(r.pollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		if !streamOK {
			if err := r.ensureStream(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.m.errors.Inc()
				d := bo.delay()
				r.log.Warn("relay: ensure stream failed", "err", err, "retry_in", d)
				sleep(ctx, d, reconnected)
				continue
			}
			streamOK = true
		}

		n, err := r.publishOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			r.m.errors.Inc()
			// The stream may be gone or changed: check it again.
			streamOK = false
			d := bo.delay()
			r.log.Warn("relay: publish failed", "err", err, "published", n, "retry_in", d)
			sleep(ctx, d, reconnected)
			continue
		}
		bo.reset()
		if n > 0 {
			continue
		}

		poll.Reset(r.pollInterval)
		select {
		case <-ctx.Done():
		case <-r.kick:
		case <-poll.C:
		}
	}
}

// ensureStream creates or reconciles the stream, within AckTimeout.
func (r *Relay) ensureStream(ctx context.Context) error {
	if err := r.connErr(); err != nil {
		return fmt.Errorf("relay: ensure stream %s: %w", r.stream.Name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, r.ackTimeout)
	defer cancel()
	s, err := events.EnsureStream(ctx, r.js, r.stream)
	if err != nil {
		return fmt.Errorf("relay: %w", err)
	}
	drift := events.StreamDrift(s.CachedInfo().Config, r.stream)
	if d := strings.Join(drift, "; "); d != r.drift {
		r.drift = d
		for _, line := range drift {
			r.log.Warn("relay: the stream's settings differ from the flags; keeping the stream's (change them with `nats stream edit`, decision 0030)", "difference", line)
		}
	}
	return nil
}

// sleep waits for d, the end of ctx, or a status on wake.
func sleep(ctx context.Context, d time.Duration, wake <-chan nats.Status) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-wake:
	}
}
