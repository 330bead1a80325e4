package webhooks

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/backoff"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// maxFilterSubjects bounds the filter subjects of one consumer (accounts
// times kinds).
const maxFilterSubjects = 1000

// filterSubjects returns the subjects of MAILBUS_EVENTS an endpoint
// reads: every event, those of its accounts, of its kinds, or both. The
// lists hold no duplicates (validated at creation), so the subjects do
// not overlap, as JetStream requires.
func filterSubjects(rec *endpointRecord) []string {
	accounts, kinds := rec.AccountIDs, rec.EventKinds
	if len(accounts) == 0 {
		accounts = []string{"*"}
	}
	if len(kinds) == 0 {
		if len(rec.AccountIDs) == 0 {
			return []string{events.AllSubjects}
		}
		kinds = []string{">"}
	}
	var out []string
	for _, a := range accounts {
		for _, k := range kinds {
			out = append(out, events.SubjectPrefix+"."+a+"."+k)
		}
	}
	return out
}

// ensureConsumer creates or updates an endpoint's durable consumer on
// MAILBUS_EVENTS (decision 0027): events from the endpoint's creation on,
// one in flight, never given up by JetStream (the worker dead-letters),
// and on nats-server 2.11+ a pinned-client group so that one replica at a
// time delivers them.
func (s *Service) ensureConsumer(ctx context.Context, rec *endpointRecord) (jetstream.Consumer, error) {
	start := rec.Created
	cfg := jetstream.ConsumerConfig{
		Durable:       consumerPrefix + rec.ID,
		Description:   "mailbus webhook endpoint " + rec.ID,
		DeliverPolicy: jetstream.DeliverByStartTimePolicy,
		OptStartTime:  &start,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       s.cfg.AckWait,
		MaxAckPending: 1,
		MaxDeliver:    -1,
	}
	if f := filterSubjects(rec); len(f) == 1 {
		cfg.FilterSubject = f[0]
	} else {
		cfg.FilterSubjects = f
	}
	if s.pinned {
		cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
		cfg.PriorityGroups = []string{priorityGroup}
		cfg.PinnedTTL = s.cfg.PinnedTTL
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := s.js.CreateOrUpdateConsumer(ctx, events.StreamName, cfg)
	if err != nil {
		return nil, fmt.Errorf("webhooks: consumer of endpoint %s: %w", rec.ID, err)
	}
	return c, nil
}

// deliverLoop attempts a delivery until it is delivered or dead-lettered
// (true), or ctx ends or the endpoint is gone (false). current returns the
// endpoint as it is now (nil: deleted), so that a new URL, secret or
// pause applies to the next attempt. The caller records and acks.
func (s *Service) deliverLoop(ctx context.Context, current func() *endpointRecord, rec *deliveryRecord, ev *mailbusv1.Event, kind string) bool {
	rec.EventID, rec.Kind, rec.AccountID = ev.GetId(), kind, ev.GetAccountId()
	if rec.Created.IsZero() {
		rec.Created = time.Now()
	}
	if rec.WindowStart.IsZero() {
		rec.WindowStart = rec.Created
	}
	for {
		ep := current()
		if ep == nil {
			return false
		}
		if ep.Paused {
			if !backoff.Sleep(ctx, time.Second) {
				return false
			}
			continue
		}
		// An attempt under way is finished when the service stops: its
		// answer decides whether the event is acked or sent again, so a
		// receiver that accepted it does not get it twice.
		a := s.attempt(context.WithoutCancel(ctx), ep, ev, kind, rec)
		rec.addAttempt(a)
		if a.ok() {
			rec.Status = mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED
			rec.NextAttempt = time.Time{}
			return true
		}
		if ctx.Err() != nil {
			s.recordDetached(ctx, rec)
			return false
		}
		rec.Failures++
		delay := s.retryDelay(rec.Failures)
		now := time.Now()
		if now.Add(delay).After(rec.WindowStart.Add(s.cfg.RetryWindow)) {
			rec.Status = mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED
			rec.NextAttempt = time.Time{}
			return true
		}
		rec.NextAttempt = now.Add(delay)
		if err := s.deliveries.put(ctx, rec); err != nil && ctx.Err() == nil {
			s.log.Warn("recording a failed attempt", "endpoint", rec.EndpointID, "seq", rec.Seq, "err", err)
		}
		s.metrics.retrying.Inc()
		slept := backoff.Sleep(ctx, delay)
		s.metrics.retrying.Dec()
		if !slept {
			return false
		}
	}
}

// recordDetached records a delivery's failed attempt while the service
// stops.
func (s *Service) recordDetached(ctx context.Context, rec *deliveryRecord) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := s.deliveries.put(ctx, rec); err != nil {
		s.log.Warn("recording a failed attempt", "endpoint", rec.EndpointID, "seq", rec.Seq, "err", err)
	}
}

// retryDelay is the wait after the n-th failed attempt of a window:
// RetryMin doubled n-1 times, at most RetryMax, with equal jitter.
func (s *Service) retryDelay(n int) time.Duration {
	d := s.cfg.RetryMin
	for i := 1; i < n && d < s.cfg.RetryMax; i++ {
		d *= 2
	}
	return backoff.Jitter(min(d, s.cfg.RetryMax))
}

// attempt builds the payload of one delivery and POSTs it once.
func (s *Service) attempt(ctx context.Context, ep *endpointRecord, ev *mailbusv1.Event, kind string, rec *deliveryRecord) attemptRecord {
	now := time.Now()
	secrets, err := ep.secrets(s.box, now)
	if err != nil {
		return attemptRecord{Time: now, Error: err.Error()}
	}
	cctx, cancel := context.WithTimeout(ctx, 3*s.cfg.RequestTimeout)
	content, err := fetchContent(cctx, s.content, ep, ev)
	cancel()
	if err != nil {
		return attemptRecord{Time: now, Error: "content: " + err.Error(), Duration: time.Since(now)}
	}
	body, err := encodePayload(&mailbusv1.WebhookPayload{Kind: kind, Event: ev, Content: content, EndpointId: ep.ID, DeliveryId: rec.id()})
	if err != nil {
		return attemptRecord{Time: now, Error: err.Error()}
	}
	a := post(ctx, s.client, ep.URL, body, ev.GetId(), kind, secrets)
	result := "failed"
	if a.ok() {
		result = "ok"
	}
	s.metrics.attempts.WithLabelValues(result).Inc()
	s.metrics.duration.Observe(a.Duration.Seconds())
	return a
}

// acker is the part of a JetStream message finish needs.
type acker interface {
	DoubleAck(ctx context.Context) error
}

// finish records a finished delivery (when record is set) and acks its
// message, retrying both while NATS is away, for at most the ack wait
// (after which JetStream sends the message again and the record decides).
//
// It goes on when ctx ends (the service stops), for at most 10 s: an event
// delivered just before must not be sent again after a restart.
func (s *Service) finish(ctx context.Context, rec *deliveryRecord, msg acker, record bool) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.cfg.AckWait, 10*time.Second))
	defer cancel()
	deadline, _ := ctx.Deadline()
	delay := 50 * time.Millisecond
	for {
		var err error
		if record {
			err = s.deliveries.put(ctx, rec)
		}
		if err == nil {
			record = false
			actx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = msg.DoubleAck(actx)
			cancel()
		}
		if err == nil {
			switch rec.Status {
			case mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED:
				s.metrics.deliveries.WithLabelValues("delivered").Inc()
			case mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED:
				s.metrics.deliveries.WithLabelValues("dead_lettered").Inc()
				s.log.Warn("delivery dead-lettered", "endpoint", rec.EndpointID, "delivery", rec.id(), "event", rec.EventID, "attempts", rec.AttemptCount)
			}
			return
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			s.log.Warn("could not record or ack a finished delivery; JetStream sends it again", "endpoint", rec.EndpointID, "seq", rec.Seq, "err", err)
			return
		}
		if !backoff.Sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, 2*time.Second)
	}
}
