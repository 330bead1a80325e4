package webhooks

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// worker delivers the events of one endpoint: it pulls its durable
// consumer, one event at a time (MaxAckPending 1), and acks each once it
// is delivered or dead-lettered. With pinned consumers, every replica
// runs a worker per endpoint and only the pinned one receives events.
type worker struct {
	s  *Service
	id string

	mu      sync.Mutex
	rec     *endpointRecord
	changed chan struct{} // one pending signal: rec changed

	stopOnce sync.Once
	stopped  chan struct{}
}

func newWorker(s *Service, rec *endpointRecord) *worker {
	return &worker{s: s, id: rec.ID, rec: rec, changed: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// current is the endpoint as last announced.
func (w *worker) current() *endpointRecord {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.rec
}

// update takes a new version of the endpoint: the next attempt uses it;
// a change of filters or status restarts the pull.
func (w *worker) update(rec *endpointRecord) {
	w.mu.Lock()
	old := w.rec
	w.rec = rec
	w.mu.Unlock()
	if old.Paused != rec.Paused || !slices.Equal(old.AccountIDs, rec.AccountIDs) || !slices.Equal(old.EventKinds, rec.EventKinds) {
		select {
		case w.changed <- struct{}{}:
		default:
		}
	}
}

// stop ends the worker (the endpoint was deleted, or the service stops).
func (w *worker) stop() { w.stopOnce.Do(func() { close(w.stopped) }) }

// run pulls and delivers until the worker is stopped or ctx ends.
func (w *worker) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-w.stopped:
			cancel()
		case <-ctx.Done():
		}
	}()
	log := w.s.log.With("endpoint", w.id)
	delay := 100 * time.Millisecond
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		rec := w.current()
		if rec.Paused {
			select {
			case <-ctx.Done():
			case <-w.changed:
			}
			continue
		}
		var err error
		cons, err = w.s.ensureConsumer(ctx, rec)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("endpoint consumer not ready; retrying", "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(delay):
			}
			delay = min(2*delay, 10*time.Second)
			continue
		}
		delay = 100 * time.Millisecond
		if err := w.consume(ctx, cons); err != nil && ctx.Err() == nil {
			log.Warn("pulling endpoint events; pulling again", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
	// Stopping (not deleted): let another replica take the endpoint now
	// rather than after the pinned TTL.
	if cons != nil && w.s.pinned {
		uctx, ucancel := context.WithTimeout(context.Background(), 2*time.Second)
		if st, err := w.s.js.Stream(uctx, events.StreamName); err == nil {
			_ = st.UnpinConsumer(uctx, consumerPrefix+w.id, priorityGroup)
		}
		ucancel()
	}
}

// consume pulls until ctx ends, the endpoint's filters or status change,
// or the pull fails.
func (w *worker) consume(ctx context.Context, cons jetstream.Consumer) error {
	opts := []jetstream.PullMessagesOpt{jetstream.PullExpiry(w.s.pullExpiry()), jetstream.PullMaxMessages(1)}
	if w.s.pinned {
		opts = append(opts, jetstream.PullPriorityGroup(priorityGroup))
	}
	it, err := cons.Messages(opts...)
	if err != nil {
		return err
	}
	defer it.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-ctx.Done():
			it.Stop()
		case <-w.changed:
			// Messages already received are still handled (Drain), so
			// that none waits for its ack wait to come again.
			it.Drain()
		case <-done:
		}
	}()
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		w.handle(ctx, msg)
	}
}

// handle delivers one event of the endpoint's consumer and acks it.
func (w *worker) handle(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		_ = msg.Term()
		return
	}
	seq := meta.Sequence.Stream
	rec := &deliveryRecord{EndpointID: w.id, Seq: seq, Status: mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING}
	if meta.NumDelivered > 1 {
		// Sent before, by this replica before a restart or by another:
		// go on from its record; a finished one is only acked.
		prev, err := w.s.deliveries.get(ctx, w.id, seq)
		switch {
		case err == nil && prev.Status != mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING:
			w.s.finish(ctx, prev, msg, false)
			return
		case err == nil:
			rec = prev
		case !errors.Is(err, errDeliveryNotFound):
			w.s.log.Warn("reading a delivery record", "endpoint", w.id, "seq", seq, "err", err)
		}
	}
	stopBeat := heartbeat(msg, w.s.cfg.AckWait/3)
	defer stopBeat()
	ev, kind, err := decodeEvent(msg.Subject(), msg.Data())
	if err != nil {
		w.s.log.Error("undecodable event: dead-lettered", "endpoint", w.id, "seq", seq, "err", err)
		rec.addAttempt(attemptRecord{Time: time.Now(), Error: err.Error()})
		rec.Status = mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED
		w.s.finish(ctx, rec, msg, true)
		return
	}
	if !w.s.deliverLoop(ctx, w.current, rec, ev, kind) {
		_ = msg.Nak() // stopping: sent again at once to whoever goes on
		return
	}
	w.s.finish(ctx, rec, msg, true)
}

// decodeEvent decodes an event of MAILBUS_EVENTS and its kind.
func decodeEvent(subject string, data []byte) (*mailbusv1.Event, string, error) {
	ev, err := events.Unmarshal(data)
	if err != nil {
		return nil, "", err
	}
	kind := events.Kind(ev)
	if _, k, err := events.ParseSubject(subject); err == nil {
		kind = k
	}
	ev.Id = ev.GetId()
	return ev, kind, nil
}

// heartbeat tells JetStream every period that msg is still being worked
// on, so that it is not sent again while its delivery is retried; the
// returned function stops it.
func heartbeat(msg jetstream.Msg, period time.Duration) func() {
	period = max(period, 100*time.Millisecond)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	})
	return func() { close(stop); wg.Wait() }
}

// pullExpiry is how long one pull request waits; shorter than the pinned
// TTL, so that a working replica keeps its pin.
func (s *Service) pullExpiry() time.Duration {
	return min(max(s.cfg.PinnedTTL/3, time.Second), 30*time.Second)
}
