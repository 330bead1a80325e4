package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// maxConcurrentRedeliveries bounds the redeliveries one replica works on
// at once.
const maxConcurrentRedeliveries = 16

// redeliveryRequest is a message of the redelivery stream.
type redeliveryRequest struct {
	EndpointID string `json:"endpoint_id"`
	Seq        uint64 `json:"seq"`
}

// queueRedelivery marks a finished delivery pending with a new retry
// window and queues it on the redelivery stream.
func (s *Service) queueRedelivery(ctx context.Context, rec *deliveryRecord) error {
	now := time.Now()
	rec.Status = mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING
	rec.WindowStart, rec.Failures, rec.NextAttempt = now, 0, now
	if err := s.deliveries.put(ctx, rec); err != nil {
		return err
	}
	b, err := json.Marshal(redeliveryRequest{EndpointID: rec.EndpointID, Seq: rec.Seq})
	if err != nil {
		return fmt.Errorf("webhooks: encode redelivery: %w", err)
	}
	if _, err := s.js.Publish(ctx, redeliverySubject+"."+rec.EndpointID, b); err != nil {
		return fmt.Errorf("webhooks: queue redelivery: %w", err)
	}
	return nil
}

// redeliveries works the redelivery stream until ctx ends. Every replica
// pulls from the one durable consumer; redeliveries are not ordered with
// the endpoint's other events.
func (s *Service) redeliveries(ctx context.Context) {
	for ctx.Err() == nil {
		err := s.pullRedeliveries(ctx)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("pulling redeliveries; pulling again", "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Service) pullRedeliveries(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := s.js.CreateOrUpdateConsumer(cctx, RedeliveryStream, jetstream.ConsumerConfig{
		Durable: redeliveryDurable, AckPolicy: jetstream.AckExplicitPolicy, AckWait: s.cfg.AckWait,
		MaxAckPending: 4 * maxConcurrentRedeliveries, MaxDeliver: -1,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("webhooks: redelivery consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullExpiry(s.pullExpiry()), jetstream.PullMaxMessages(maxConcurrentRedeliveries))
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	sem := make(chan struct{}, maxConcurrentRedeliveries)
	defer func() {
		for range maxConcurrentRedeliveries {
			sem <- struct{}{} // wait for those in progress
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
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			s.redeliver1(ctx, msg)
		}()
	}
}

// redeliver1 sends one queued redelivery, with retries, and acks it.
func (s *Service) redeliver1(ctx context.Context, msg jetstream.Msg) {
	var req redeliveryRequest
	if err := json.Unmarshal(msg.Data(), &req); err != nil || !validEndpointID(req.EndpointID) {
		_ = msg.Term()
		return
	}
	rec, err := s.deliveries.get(ctx, req.EndpointID, req.Seq)
	if errors.Is(err, errDeliveryNotFound) {
		_ = msg.Term() // the endpoint was deleted, or the record expired
		return
	}
	if err != nil {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if rec.Status != mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING {
		_ = msg.Ack() // done already (a redelivered request)
		return
	}
	stopBeat := heartbeat(msg, s.cfg.AckWait/3)
	defer stopBeat()
	ev, kind, err := s.eventAt(ctx, req.Seq)
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		_ = msg.NakWithDelay(time.Second)
		return
	}
	if err != nil {
		rec.addAttempt(attemptRecord{Time: time.Now(), Error: err.Error()})
		rec.Status = mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED
		s.finish(ctx, rec, msg, true)
		return
	}
	var last *endpointRecord
	current := func() *endpointRecord {
		ep, _, err := s.endpoints.get(ctx, req.EndpointID)
		switch {
		case errors.Is(err, errEndpointNotFound):
			return nil
		case err != nil:
			return last // NATS away: the last known version
		}
		last = ep
		return ep
	}
	if !s.deliverLoop(ctx, current, rec, ev, kind) {
		_ = msg.Nak()
		return
	}
	s.finish(ctx, rec, msg, true)
}

// eventAt reads the event at a sequence of MAILBUS_EVENTS.
func (s *Service) eventAt(ctx context.Context, seq uint64) (*mailbusv1.Event, string, error) {
	st, err := s.js.Stream(ctx, events.StreamName)
	if err != nil {
		return nil, "", fmt.Errorf("webhooks: stream %s: %w", events.StreamName, err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, "", fmt.Errorf("webhooks: event %d is no longer in %s: %w", seq, events.StreamName, err)
	}
	return decodeEvent(raw.Subject, raw.Data)
}
