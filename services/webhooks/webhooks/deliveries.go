package webhooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// maxAttemptsKept is how many attempts a delivery record keeps (the
// newest); the count of all of them is kept beside.
const maxAttemptsKept = 50

var errDeliveryNotFound = errors.New("webhooks: delivery not found")

// attemptRecord is one POST, as stored.
type attemptRecord struct {
	Time       time.Time     `json:"time"`
	HTTPStatus int           `json:"http_status,omitempty"`
	Error      string        `json:"error,omitempty"`
	Duration   time.Duration `json:"duration"`
}

func (a attemptRecord) proto() *mailbusv1.WebhookAttempt {
	return &mailbusv1.WebhookAttempt{Time: timestamppb.New(a.Time), HttpStatus: int32(a.HTTPStatus), Error: a.Error, Duration: durationpb.New(a.Duration)}
}

// deliveryRecord is one event on its way to one endpoint, stored in the
// deliveries bucket under "<endpoint id>.<event stream sequence, 20
// digits>", so that keys sort by event order.
type deliveryRecord struct {
	EndpointID string                          `json:"endpoint_id"`
	Seq        uint64                          `json:"seq"`
	EventID    string                          `json:"event_id"`
	Kind       string                          `json:"kind"`
	AccountID  string                          `json:"account_id"`
	Status     mailbusv1.WebhookDeliveryStatus `json:"status"`
	Attempts   []attemptRecord                 `json:"attempts,omitempty"`
	// AttemptCount counts every attempt, also those no longer kept.
	AttemptCount int       `json:"attempt_count"`
	Created      time.Time `json:"created"`
	// WindowStart is when the current retry window began: the first
	// attempt, or the last Redeliver.
	WindowStart time.Time `json:"window_start"`
	// Failures counts the failed attempts of the current window (the
	// backoff's exponent).
	Failures    int       `json:"failures"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// id is the delivery's API id: the event's stream sequence.
func (d *deliveryRecord) id() string { return strconv.FormatUint(d.Seq, 10) }

func (d *deliveryRecord) addAttempt(a attemptRecord) {
	d.Attempts = append(d.Attempts, a)
	if len(d.Attempts) > maxAttemptsKept {
		d.Attempts = slices.Delete(d.Attempts, 0, len(d.Attempts)-maxAttemptsKept)
	}
	d.AttemptCount++
}

func (d *deliveryRecord) proto() *mailbusv1.WebhookDelivery {
	p := &mailbusv1.WebhookDelivery{
		Id: d.id(), EndpointId: d.EndpointID, EventId: d.EventID, EventKind: d.Kind, AccountId: d.AccountID,
		Status: d.Status, CreateTime: timestamppb.New(d.Created),
	}
	for _, a := range d.Attempts {
		p.Attempts = append(p.Attempts, a.proto())
	}
	if d.Status == mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING && !d.NextAttempt.IsZero() {
		p.NextAttemptTime = timestamppb.New(d.NextAttempt)
	}
	return p
}

// deliveryKey is the key of an endpoint's delivery of the event at seq.
func deliveryKey(endpointID string, seq uint64) string {
	return fmt.Sprintf("%s.%020d", endpointID, seq)
}

// parseDeliveryID parses an API delivery id.
func parseDeliveryID(id string) (uint64, bool) {
	seq, err := strconv.ParseUint(id, 10, 64)
	return seq, err == nil && seq > 0
}

// deliveryStore keeps delivery records in a KV bucket whose values expire
// after the retention (the bucket's max age).
type deliveryStore struct {
	kv jetstream.KeyValue
}

func (s *deliveryStore) put(ctx context.Context, d *deliveryRecord) error {
	b, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("webhooks: encode delivery: %w", err)
	}
	if _, err := s.kv.Put(ctx, deliveryKey(d.EndpointID, d.Seq), b); err != nil {
		return fmt.Errorf("webhooks: record delivery %s/%d: %w", d.EndpointID, d.Seq, err)
	}
	return nil
}

func (s *deliveryStore) get(ctx context.Context, endpointID string, seq uint64) (*deliveryRecord, error) {
	e, err := s.kv.Get(ctx, deliveryKey(endpointID, seq))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, errDeliveryNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("webhooks: get delivery %s/%d: %w", endpointID, seq, err)
	}
	var d deliveryRecord
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return nil, fmt.Errorf("webhooks: decode delivery %s/%d: %w", endpointID, seq, err)
	}
	return &d, nil
}

// seqs returns the event sequences of an endpoint's delivery records,
// newest first.
func (s *deliveryStore) seqs(ctx context.Context, endpointID string) ([]uint64, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, endpointID+".*")
	if err != nil {
		return nil, fmt.Errorf("webhooks: list deliveries of %s: %w", endpointID, err)
	}
	var out []uint64
	for k := range lister.Keys() {
		_, n, ok := strings.Cut(k, ".")
		if !ok {
			continue
		}
		if seq, err := strconv.ParseUint(n, 10, 64); err == nil {
			out = append(out, seq)
		}
	}
	slices.SortFunc(out, func(a, b uint64) int { return -cmpU(a, b) })
	return out, nil
}

// deleteAll removes an endpoint's delivery records.
func (s *deliveryStore) deleteAll(ctx context.Context, endpointID string) error {
	seqs, err := s.seqs(ctx, endpointID)
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		if err := s.kv.Purge(ctx, deliveryKey(endpointID, seq)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("webhooks: delete delivery %s/%d: %w", endpointID, seq, err)
		}
	}
	return nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
