package webhooks

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Limits of an endpoint.
const (
	maxAccountsPerEndpoint = 100
	maxDescription         = 200
	minSecretLen           = 16
	maxSecretLen           = 1024
	maxSecretOverlap       = 7 * 24 * time.Hour
	defaultPageSize        = 100
	maxPageSize            = 1000
)

// apiServer implements WebhookService. Authentication is the server's
// business (admin tokens only: the store's interceptors, or adminCheck on
// the service's own port).
type apiServer struct {
	mailbusv1.UnimplementedWebhookServiceServer
	s *Service
}

func (a *apiServer) ready(ctx context.Context) error {
	if err := a.s.waitReady(ctx); err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return nil
}

// apiError maps the package's errors to gRPC statuses.
func apiError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errEndpointNotFound):
		return status.Error(codes.NotFound, "endpoint not found")
	case errors.Is(err, errDeliveryNotFound):
		return status.Error(codes.NotFound, "delivery not found")
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return status.Error(codes.Aborted, "endpoint changed meanwhile; try again")
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codes.Unavailable, err.Error())
}

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// setFields validates the fields of in named by fields into rec (not the
// secret).
func (a *apiServer) setFields(ctx context.Context, rec *endpointRecord, in *mailbusv1.WebhookEndpoint, fields []string) error {
	for _, f := range fields {
		switch f {
		case "url":
			if err := checkURL(ctx, in.GetUrl(), a.s.cfg.AllowPrivate, a.s.cfg.Resolver); err != nil {
				return invalid("%v", err)
			}
			rec.URL = in.GetUrl()
		case "account_ids":
			ids := slices.Clone(in.GetAccountIds())
			slices.Sort(ids)
			ids = slices.Compact(ids)
			if len(ids) > maxAccountsPerEndpoint {
				return invalid("at most %d account_ids", maxAccountsPerEndpoint)
			}
			for _, id := range ids {
				if err := events.ValidateAccountID(id); err != nil {
					return invalid("account_ids: %v", err)
				}
			}
			rec.AccountIDs = ids
		case "event_kinds":
			kinds := slices.Clone(in.GetEventKinds())
			slices.Sort(kinds)
			kinds = slices.Compact(kinds)
			for _, k := range kinds {
				if !slices.Contains(events.Kinds(), k) {
					return invalid("event_kinds: unknown kind %q (known: %v)", k, events.Kinds())
				}
			}
			rec.EventKinds = kinds
		case "include":
			var inc []int32
			for _, i := range in.GetInclude() {
				if _, ok := mailbusv1.WebhookInclude_name[int32(i)]; !ok || i == mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_UNSPECIFIED {
					return invalid("include: invalid value %d", i)
				}
				if !slices.Contains(inc, int32(i)) {
					inc = append(inc, int32(i))
				}
			}
			slices.Sort(inc)
			rec.Include = inc
		case "body_cap_bytes":
			if in.GetBodyCapBytes() > MaxBodyCap {
				return invalid("body_cap_bytes: at most %d", MaxBodyCap)
			}
			rec.BodyCap = in.GetBodyCapBytes()
		case "status":
			switch in.GetStatus() {
			case mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_UNSPECIFIED, mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_ACTIVE:
				rec.Paused = false
			case mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_PAUSED:
				rec.Paused = true
			default:
				return invalid("status: invalid value %d", in.GetStatus())
			}
		case "description":
			if len(in.GetDescription()) > maxDescription {
				return invalid("description: at most %d octets", maxDescription)
			}
			rec.Description = in.GetDescription()
		default:
			return invalid("update_mask: %q cannot be changed", f)
		}
	}
	if len(filterSubjects(rec)) > maxFilterSubjects {
		return invalid("account_ids times event_kinds: at most %d", maxFilterSubjects)
	}
	return nil
}

// setSecret seals secret (or a new one when empty) as the endpoint's
// current secret; it returns the generated secret.
func (a *apiServer) setSecret(rec *endpointRecord, secret string) (generated string, err error) {
	if secret == "" {
		if secret, err = newSecret(); err != nil {
			return "", err
		}
		generated = secret
	}
	if len(secret) < minSecretLen || len(secret) > maxSecretLen {
		return "", invalid("secret: %d to %d octets", minSecretLen, maxSecretLen)
	}
	sealed, err := a.s.box.Seal([]byte(secret), secretOwner(rec.ID))
	if err != nil {
		return "", err
	}
	rec.Secret = sealed
	return generated, nil
}

var createFields = []string{"url", "account_ids", "event_kinds", "include", "body_cap_bytes", "status", "description"}

func (a *apiServer) CreateEndpoint(ctx context.Context, req *mailbusv1.CreateEndpointRequest) (*mailbusv1.CreateEndpointResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	in := req.GetEndpoint()
	if in.GetUrl() == "" {
		return nil, invalid("endpoint.url is required")
	}
	id, err := newEndpointID()
	if err != nil {
		return nil, apiError(err)
	}
	now := time.Now().UTC()
	rec := &endpointRecord{ID: id, Created: now, Updated: now}
	if err := a.setFields(ctx, rec, in, createFields); err != nil {
		return nil, err
	}
	generated, err := a.setSecret(rec, in.GetSecret())
	if err != nil {
		return nil, apiError(err)
	}
	if err := a.s.endpoints.create(ctx, rec); err != nil {
		return nil, apiError(err)
	}
	// The consumer now, so that events published from here on are read
	// even before a worker comes to it (it starts at the creation time).
	if _, err := a.s.ensureConsumer(ctx, rec); err != nil {
		a.s.log.Warn("endpoint created; its consumer is made by its worker", "endpoint", id, "err", err)
	}
	a.s.log.Info("webhook endpoint created", "endpoint", id, "url", redactedURL(rec.URL))
	return &mailbusv1.CreateEndpointResponse{Endpoint: rec.proto(), GeneratedSecret: generated}, nil
}

func (a *apiServer) ListEndpoints(ctx context.Context, req *mailbusv1.ListEndpointsRequest) (*mailbusv1.ListEndpointsResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	size := pageSize(req.GetPageSize())
	all, err := a.s.endpoints.list(ctx)
	if err != nil {
		return nil, apiError(err)
	}
	resp := &mailbusv1.ListEndpointsResponse{}
	for _, r := range all {
		if req.GetPageToken() != "" && r.ID <= req.GetPageToken() {
			continue
		}
		if len(resp.Endpoints) == size {
			resp.NextPageToken = resp.Endpoints[size-1].Id
			break
		}
		resp.Endpoints = append(resp.Endpoints, r.proto())
	}
	return resp, nil
}

func (a *apiServer) GetEndpoint(ctx context.Context, req *mailbusv1.GetEndpointRequest) (*mailbusv1.GetEndpointResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	rec, _, err := a.s.endpoints.get(ctx, req.GetEndpointId())
	if err != nil {
		return nil, apiError(err)
	}
	return &mailbusv1.GetEndpointResponse{Endpoint: rec.proto()}, nil
}

func (a *apiServer) UpdateEndpoint(ctx context.Context, req *mailbusv1.UpdateEndpointRequest) (*mailbusv1.UpdateEndpointResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	in := req.GetEndpoint()
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, invalid("update_mask: name the fields to change")
	}
	rotate := slices.Contains(paths, "secret")
	fields := slices.DeleteFunc(slices.Clone(paths), func(p string) bool { return p == "secret" })
	overlap := req.GetSecretOverlap().AsDuration()
	if req.GetSecretOverlap() != nil && (overlap < 0 || overlap > maxSecretOverlap) {
		return nil, invalid("secret_overlap: 0 to %s", maxSecretOverlap)
	}
	rec, rev, err := a.s.endpoints.get(ctx, in.GetId())
	if err != nil {
		return nil, apiError(err)
	}
	if err := a.setFields(ctx, rec, in, fields); err != nil {
		return nil, err
	}
	var generated string
	if rotate {
		previous := rec.Secret
		if generated, err = a.setSecret(rec, in.GetSecret()); err != nil {
			return nil, apiError(err)
		}
		rec.PreviousSecret, rec.PreviousUntil = nil, time.Time{}
		if overlap > 0 {
			rec.PreviousSecret, rec.PreviousUntil = previous, time.Now().UTC().Add(overlap)
		}
	}
	rec.Updated = time.Now().UTC()
	if err := a.s.endpoints.update(ctx, rec, rev); err != nil {
		return nil, apiError(err)
	}
	return &mailbusv1.UpdateEndpointResponse{Endpoint: rec.proto(), GeneratedSecret: generated}, nil
}

func (a *apiServer) DeleteEndpoint(ctx context.Context, req *mailbusv1.DeleteEndpointRequest) (*mailbusv1.DeleteEndpointResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	id := req.GetEndpointId()
	if _, _, err := a.s.endpoints.get(ctx, id); err != nil {
		return nil, apiError(err)
	}
	if err := a.s.endpoints.delete(ctx, id); err != nil {
		return nil, apiError(err)
	}
	if err := a.s.js.DeleteConsumer(ctx, events.StreamName, consumerPrefix+id); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) && !errors.Is(err, jetstream.ErrStreamNotFound) {
		a.s.log.Warn("deleting an endpoint's consumer", "endpoint", id, "err", err)
	}
	if err := a.s.deliveries.deleteAll(ctx, id); err != nil {
		a.s.log.Warn("deleting an endpoint's delivery records (they expire anyway)", "endpoint", id, "err", err)
	}
	a.s.log.Info("webhook endpoint deleted", "endpoint", id)
	return &mailbusv1.DeleteEndpointResponse{}, nil
}

func (a *apiServer) SendTestEvent(ctx context.Context, req *mailbusv1.SendTestEventRequest) (*mailbusv1.SendTestEventResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	rec, _, err := a.s.endpoints.get(ctx, req.GetEndpointId())
	if err != nil {
		return nil, apiError(err)
	}
	secrets, err := rec.secrets(a.s.box, time.Now())
	if err != nil {
		return nil, apiError(err)
	}
	id, err := newEndpointID()
	if err != nil {
		return nil, apiError(err)
	}
	ev := &mailbusv1.Event{Id: "test-" + id, Time: nowProto()}
	body, err := encodePayload(&mailbusv1.WebhookPayload{Kind: KindTest, Event: ev, EndpointId: rec.ID})
	if err != nil {
		return nil, apiError(err)
	}
	at := post(ctx, a.s.client, rec.URL, body, ev.Id, KindTest, secrets)
	return &mailbusv1.SendTestEventResponse{Attempt: at.proto(), EventId: ev.Id}, nil
}

func (a *apiServer) ListDeliveries(ctx context.Context, req *mailbusv1.ListDeliveriesRequest) (*mailbusv1.ListDeliveriesResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	if _, _, err := a.s.endpoints.get(ctx, req.GetEndpointId()); err != nil {
		return nil, apiError(err)
	}
	var after uint64
	if t := req.GetPageToken(); t != "" {
		var ok bool
		if after, ok = parseDeliveryID(t); !ok {
			return nil, invalid("page_token: not one of ListDeliveries")
		}
	}
	size := pageSize(req.GetPageSize())
	seqs, err := a.s.deliveries.seqs(ctx, req.GetEndpointId())
	if err != nil {
		return nil, apiError(err)
	}
	resp := &mailbusv1.ListDeliveriesResponse{}
	for _, seq := range seqs {
		if after != 0 && seq >= after {
			continue
		}
		d, err := a.s.deliveries.get(ctx, req.GetEndpointId(), seq)
		if errors.Is(err, errDeliveryNotFound) {
			continue
		}
		if err != nil {
			return nil, apiError(err)
		}
		if req.GetStatus() != mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_UNSPECIFIED && d.Status != req.GetStatus() {
			continue
		}
		if len(resp.Deliveries) == size {
			resp.NextPageToken = resp.Deliveries[size-1].Id
			break
		}
		resp.Deliveries = append(resp.Deliveries, d.proto())
	}
	return resp, nil
}

func (a *apiServer) Redeliver(ctx context.Context, req *mailbusv1.RedeliverRequest) (*mailbusv1.RedeliverResponse, error) {
	if err := a.ready(ctx); err != nil {
		return nil, err
	}
	if _, _, err := a.s.endpoints.get(ctx, req.GetEndpointId()); err != nil {
		return nil, apiError(err)
	}
	seq, ok := parseDeliveryID(req.GetDeliveryId())
	if !ok {
		return nil, status.Error(codes.NotFound, "delivery not found")
	}
	rec, err := a.s.deliveries.get(ctx, req.GetEndpointId(), seq)
	if err != nil {
		return nil, apiError(err)
	}
	if rec.Status == mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING {
		return nil, status.Error(codes.FailedPrecondition, "the delivery is pending: it is being retried")
	}
	if err := a.s.queueRedelivery(ctx, rec); err != nil {
		return nil, apiError(err)
	}
	return &mailbusv1.RedeliverResponse{Delivery: rec.proto()}, nil
}

func pageSize(n uint32) int {
	switch {
	case n == 0:
		return defaultPageSize
	case n > maxPageSize:
		return maxPageSize
	}
	return int(n)
}

// redactedURL is a URL for logs: without its query, which may hold a
// token.
func redactedURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid)"
	}
	u.RawQuery, u.Fragment = "", ""
	return u.Redacted()
}

func nowProto() *timestamppb.Timestamp { return timestamppb.Now() }
