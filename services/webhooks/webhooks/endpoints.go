package webhooks

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/secretbox"
)

// endpointKeyPrefix begins the key of every endpoint in the endpoints
// bucket: "endpoint.<id>".
const endpointKeyPrefix = "endpoint."

// errEndpointNotFound is returned for an endpoint id the bucket does not
// hold.
var errEndpointNotFound = errors.New("webhooks: endpoint not found")

// endpointRecord is an endpoint as stored in the endpoints bucket (JSON).
// Secrets are sealed with secretbox, bound to the endpoint's id.
type endpointRecord struct {
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	AccountIDs  []string  `json:"account_ids,omitempty"`
	EventKinds  []string  `json:"event_kinds,omitempty"`
	Include     []int32   `json:"include,omitempty"`
	BodyCap     uint32    `json:"body_cap,omitempty"`
	Paused      bool      `json:"paused,omitempty"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
	// Secret is the sealed current signing secret.
	Secret []byte `json:"secret"`
	// PreviousSecret, sealed, also signs until PreviousUntil.
	PreviousSecret []byte    `json:"previous_secret,omitempty"`
	PreviousUntil  time.Time `json:"previous_until,omitzero"`
}

// proto returns the endpoint as the API shows it: without secrets.
func (r *endpointRecord) proto() *mailbusv1.WebhookEndpoint {
	ep := &mailbusv1.WebhookEndpoint{
		Id: r.ID, Url: r.URL, AccountIds: slices.Clone(r.AccountIDs), EventKinds: slices.Clone(r.EventKinds),
		BodyCapBytes: r.BodyCap, Description: r.Description,
		Status:     mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_ACTIVE,
		CreateTime: timestamppb.New(r.Created), UpdateTime: timestamppb.New(r.Updated),
	}
	if r.Paused {
		ep.Status = mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_PAUSED
	}
	for _, inc := range r.Include {
		ep.Include = append(ep.Include, mailbusv1.WebhookInclude(inc))
	}
	if len(r.PreviousSecret) > 0 && !r.PreviousUntil.IsZero() {
		ep.PreviousSecretExpireTime = timestamppb.New(r.PreviousUntil)
	}
	return ep
}

// includes reports whether the endpoint asked for inc.
func (r *endpointRecord) includes(inc mailbusv1.WebhookInclude) bool {
	return slices.Contains(r.Include, int32(inc))
}

// bodyCap is the endpoint's cap on text and HTML bodies.
func (r *endpointRecord) bodyCap() int {
	if r.BodyCap == 0 {
		return DefaultBodyCap
	}
	return int(r.BodyCap)
}

// secrets opens the signing secrets valid at now, the current one first.
func (r *endpointRecord) secrets(box *secretbox.Box, now time.Time) ([][]byte, error) {
	cur, err := box.Open(r.Secret, secretOwner(r.ID))
	if err != nil {
		return nil, fmt.Errorf("webhooks: endpoint %s: open secret: %w", r.ID, err)
	}
	out := [][]byte{cur}
	if len(r.PreviousSecret) > 0 && now.Before(r.PreviousUntil) {
		prev, err := box.Open(r.PreviousSecret, secretOwner(r.ID))
		if err != nil {
			return nil, fmt.Errorf("webhooks: endpoint %s: open previous secret: %w", r.ID, err)
		}
		out = append(out, prev)
	}
	return out, nil
}

// secretOwner binds a sealed secret to its endpoint, so that a sealed
// value copied to another endpoint does not open.
func secretOwner(id string) string { return "webhook-endpoint:" + id }

// newEndpointID returns a random id: 16 lowercase hex digits, a valid NATS
// subject token and consumer name.
func newEndpointID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhooks: endpoint id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// newSecret returns a random signing secret: "whsec_" and 32 random octets
// in hex.
func newSecret() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("webhooks: secret: %w", err)
	}
	return "whsec_" + hex.EncodeToString(b[:]), nil
}

// endpointStore keeps the endpoints in a JetStream KV bucket, which every
// replica reads and watches.
type endpointStore struct {
	kv jetstream.KeyValue
}

func decodeEndpoint(b []byte) (*endpointRecord, error) {
	var r endpointRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("webhooks: decode endpoint: %w", err)
	}
	return &r, nil
}

// get returns an endpoint and its revision.
func (s *endpointStore) get(ctx context.Context, id string) (*endpointRecord, uint64, error) {
	if !validEndpointID(id) {
		return nil, 0, errEndpointNotFound
	}
	e, err := s.kv.Get(ctx, endpointKeyPrefix+id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, errEndpointNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("webhooks: get endpoint %s: %w", id, err)
	}
	r, err := decodeEndpoint(e.Value())
	return r, e.Revision(), err
}

// create stores a new endpoint; it fails if the id exists.
func (s *endpointStore) create(ctx context.Context, r *endpointRecord) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("webhooks: encode endpoint: %w", err)
	}
	if _, err := s.kv.Create(ctx, endpointKeyPrefix+r.ID, b); err != nil {
		return fmt.Errorf("webhooks: create endpoint %s: %w", r.ID, err)
	}
	return nil
}

// update replaces an endpoint read at revision rev (compare and set).
func (s *endpointStore) update(ctx context.Context, r *endpointRecord, rev uint64) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("webhooks: encode endpoint: %w", err)
	}
	if _, err := s.kv.Update(ctx, endpointKeyPrefix+r.ID, b, rev); err != nil {
		return fmt.Errorf("webhooks: update endpoint %s: %w", r.ID, err)
	}
	return nil
}

// delete removes an endpoint.
func (s *endpointStore) delete(ctx context.Context, id string) error {
	if err := s.kv.Purge(ctx, endpointKeyPrefix+id); err != nil {
		return fmt.Errorf("webhooks: delete endpoint %s: %w", id, err)
	}
	return nil
}

// list returns every endpoint, ordered by id.
func (s *endpointStore) list(ctx context.Context) ([]*endpointRecord, error) {
	lister, err := s.kv.ListKeysFiltered(ctx, endpointKeyPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("webhooks: list endpoints: %w", err)
	}
	var ids []string
	for k := range lister.Keys() {
		ids = append(ids, k[len(endpointKeyPrefix):])
	}
	slices.Sort(ids)
	out := make([]*endpointRecord, 0, len(ids))
	for _, id := range ids {
		r, _, err := s.get(ctx, id)
		if errors.Is(err, errEndpointNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// validEndpointID reports whether id has the shape newEndpointID makes, so
// that ids from requests never reach a KV key or consumer name unchecked.
func validEndpointID(id string) bool {
	if len(id) != 16 {
		return false
	}
	for _, c := range id {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
