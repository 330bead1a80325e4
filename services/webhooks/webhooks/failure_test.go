package webhooks

import (
	"context"
	"errors"

	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// waitDeliveries waits until the endpoint lists n deliveries in status st.
func waitDeliveries(t *testing.T, s *Service, endpointID string, st mailbusv1.WebhookDeliveryStatus, n int) []*mailbusv1.WebhookDelivery {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		resp, err := s.Server().ListDeliveries(callCtx(t), &mailbusv1.ListDeliveriesRequest{EndpointId: endpointID, Status: st})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Deliveries) >= n {
			return resp.Deliveries
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d deliveries %v, want %d", len(resp.Deliveries), st, n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestDeadLetterThenRedeliver: an endpoint that is always down
// dead-letters each event after the (shortened) retry window, in order,
// and the next event goes on after it; Redeliver sends a dead letter
// again once the endpoint is back.
func TestDeadLetterThenRedeliver(t *testing.T) {
	n := startNATS(t)
	js := n.jetStream(t)
	svc := startService(t, n, func(c *Config) { c.RetryWindow = 300 * time.Millisecond })
	var up atomic.Bool
	rcv := newReceiver(t, testSecret, func(string, int) int {
		if up.Load() {
			return 200
		}
		return 500
	})
	ep := createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: rcv.url(), Secret: testSecret})
	pub := newPublisher(js)
	first := pub.publish(t, "a")
	second := pub.publish(t, "a")
	dead := waitDeliveries(t, svc.s, ep.Id, mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED, 2)
	if dead[0].EventId != second || dead[1].EventId != first {
		t.Fatalf("dead letters %s, %s; want %s, %s (newest first)", dead[0].EventId, dead[1].EventId, second, first)
	}
	for _, d := range dead {
		if len(d.Attempts) < 2 || d.Attempts[0].HttpStatus != 500 || d.NextAttemptTime != nil {
			t.Errorf("dead letter %v", d)
		}
	}
	// Every attempt of the first event came before any of the second.
	reqs := rcv.requests()
	sawSecond := false
	for _, x := range reqs {
		if x.eventID == second {
			sawSecond = true
		} else if sawSecond {
			t.Fatalf("an attempt of %s after one of %s", x.eventID, second)
		}
	}
	if _, err := svc.s.Server().Redeliver(callCtx(t), &mailbusv1.RedeliverRequest{EndpointId: ep.Id, DeliveryId: dead[1].Id}); status.Code(err) != codes.OK {
		t.Fatal(err)
	}
	up.Store(true)
	rcv.waitAccepted(t, 1)
	if got := rcv.accepted(); got[0].eventID != first {
		t.Fatalf("redelivered %s, want %s", got[0].eventID, first)
	}
	done := waitDeliveries(t, svc.s, ep.Id, mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED, 1)
	if done[0].Id != dead[1].Id || done[0].Attempts[len(done[0].Attempts)-1].HttpStatus != 200 {
		t.Errorf("redelivered delivery %v", done[0])
	}
	// New events flow again, and a delivered one can be sent again too.
	third := pub.publish(t, "a")
	rcv.waitAccepted(t, 2)
	if _, err := svc.s.Server().Redeliver(callCtx(t), &mailbusv1.RedeliverRequest{EndpointId: ep.Id, DeliveryId: done[0].Id}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitFor)
	for len(rcv.accepted()) < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := rcv.accepted()
	if len(got) != 3 || got[1].eventID != third || got[2].eventID != first {
		t.Fatalf("accepted %v", got)
	}
	if _, err := svc.s.Server().Redeliver(callCtx(t), &mailbusv1.RedeliverRequest{EndpointId: ep.Id, DeliveryId: "999999"}); status.Code(err) != codes.NotFound {
		t.Errorf("Redeliver of an unknown delivery: %v", err)
	}
}

// TestPrivateAddressesRefused: without AllowPrivate, URLs on loopback,
// private, link-local and shared addresses are refused at creation; an
// endpoint whose name resolves to such an address later (DNS rebinding,
// here a record written behind the API's back) is refused when dialed,
// and the receiver gets nothing. Redirects are not followed.
func TestPrivateAddressesRefused(t *testing.T) {
	n := startNATS(t)
	js := n.jetStream(t)
	svc := startService(t, n, func(c *Config) { c.AllowPrivate = false; c.RetryWindow = 200 * time.Millisecond })
	for _, u := range []string{
		"http://127.0.0.1/hook", "http://[::1]:8080/", "http://10.1.2.3/", "http://172.16.0.1/", "http://192.168.1.1/",
		"http://169.254.169.254/latest/meta-data", "http://[fe80::1]/", "http://100.64.0.1/", "http://0.0.0.0/",
		"http://[::ffff:127.0.0.1]/", "http://localhost:9/", "ftp://example.com/", "http://user:pw@example.com/",
	} {
		_, err := svc.s.Server().CreateEndpoint(callCtx(t), &mailbusv1.CreateEndpointRequest{Endpoint: &mailbusv1.WebhookEndpoint{Url: u}})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("CreateEndpoint(%s): %v, want InvalidArgument", u, err)
		}
	}
	rcv := newReceiver(t, testSecret, nil)
	rec := &endpointRecord{ID: "00000000000000aa", URL: rcv.url(), Created: time.Now(), Updated: time.Now()}
	if _, err := (&apiServer{s: svc.s}).setSecret(rec, testSecret); err != nil {
		t.Fatal(err)
	}
	if err := svc.s.endpoints.create(callCtx(t), rec); err != nil {
		t.Fatal(err)
	}
	resp, err := svc.s.Server().SendTestEvent(callCtx(t), &mailbusv1.SendTestEventRequest{EndpointId: rec.ID})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempt.HttpStatus != 0 || !strings.Contains(resp.Attempt.Error, "not public") {
		t.Errorf("test event to a loopback receiver: %v", resp.Attempt)
	}
	newPublisher(js).publish(t, "a")
	dead := waitDeliveries(t, svc.s, rec.ID, mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED, 1)
	if a := dead[0].Attempts[0]; !strings.Contains(a.Error, "not public") {
		t.Errorf("attempt %v, want refused as not public", a)
	}
	if got := rcv.requests(); len(got) != 0 {
		t.Errorf("the receiver got %d requests", len(got))
	}
	if err := dialControl("tcp", "93.184.215.14:443", nil); err != nil {
		t.Errorf("a public address refused: %v", err)
	}
	if err := dialControl("tcp", "127.0.0.1:80", nil); !errors.Is(err, ErrPrivateAddress) {
		t.Errorf("loopback: %v", err)
	}
}

// TestRedirectNotFollowed: a 3xx answer is a failed attempt; the target
// of the redirect is never asked.
func TestRedirectNotFollowed(t *testing.T) {
	n := startNATS(t)
	svc := startService(t, n, nil)
	var hit atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hit.Add(1) }))
	t.Cleanup(target.Close)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	ep := createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: redirect.URL, Secret: testSecret})
	resp, err := svc.s.Server().SendTestEvent(callCtx(t), &mailbusv1.SendTestEventRequest{EndpointId: ep.Id})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Attempt.HttpStatus != http.StatusTemporaryRedirect || resp.Attempt.Error == "" || hit.Load() != 0 {
		t.Errorf("attempt %v, target hit %d times", resp.Attempt, hit.Load())
	}
}

// TestWrongKeyDetected: a receiver that holds another secret than the
// endpoint's refuses every request; after a rotation with overlap both
// the old and the new secret verify, after one without only the new.
func TestWrongKeyDetected(t *testing.T) {
	n := startNATS(t)
	svc := startService(t, n, nil)
	const oldSecret, newSecret = "whsec_old_0123456789abcdef", "whsec_new_0123456789abcdef"
	oldRcv := newReceiver(t, oldSecret, nil)
	ep := createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: oldRcv.url(), Secret: oldSecret})
	test := func(url string) *mailbusv1.WebhookAttempt {
		t.Helper()
		if _, err := svc.s.Server().UpdateEndpoint(callCtx(t), &mailbusv1.UpdateEndpointRequest{
			Endpoint: &mailbusv1.WebhookEndpoint{Id: ep.Id, Url: url}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"url"}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := svc.s.Server().SendTestEvent(callCtx(t), &mailbusv1.SendTestEventRequest{EndpointId: ep.Id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Attempt
	}
	wrong := newReceiver(t, "whsec_wrong_0123456789abcdef", nil)
	if a := test(wrong.url()); a.HttpStatus != http.StatusUnauthorized || wrong.badSigs != 1 {
		t.Fatalf("receiver with the wrong key: attempt %v, %d bad signatures", a, wrong.badSigs)
	}
	if a := test(oldRcv.url()); a.HttpStatus != 200 {
		t.Fatalf("receiver with the key: %v", a)
	}
	rot, err := svc.s.Server().UpdateEndpoint(callCtx(t), &mailbusv1.UpdateEndpointRequest{
		Endpoint: &mailbusv1.WebhookEndpoint{Id: ep.Id, Secret: newSecret}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
		SecretOverlap: durationpb.New(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if rot.Endpoint.PreviousSecretExpireTime == nil || rot.Endpoint.Secret != "" || rot.GeneratedSecret != "" {
		t.Errorf("rotated endpoint %v", rot)
	}
	newRcv := newReceiver(t, newSecret, nil)
	if a := test(oldRcv.url()); a.HttpStatus != 200 {
		t.Errorf("old key during the overlap: %v", a)
	}
	if a := test(newRcv.url()); a.HttpStatus != 200 {
		t.Errorf("new key during the overlap: %v", a)
	}
	gen, err := svc.s.Server().UpdateEndpoint(callCtx(t), &mailbusv1.UpdateEndpointRequest{
		Endpoint: &mailbusv1.WebhookEndpoint{Id: ep.Id}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"secret"}}})
	if err != nil || !strings.HasPrefix(gen.GeneratedSecret, "whsec_") || gen.Endpoint.PreviousSecretExpireTime != nil {
		t.Fatalf("rotation to a generated secret without overlap: %v %v", gen, err)
	}
	if a := test(newRcv.url()); a.HttpStatus != http.StatusUnauthorized {
		t.Errorf("the previous key after a rotation without overlap: %v", a)
	}
	genRcv := newReceiver(t, gen.GeneratedSecret, nil)
	if a := test(genRcv.url()); a.HttpStatus != 200 {
		t.Errorf("the generated key: %v", a)
	}
	// The secret is never returned.
	got, err := svc.s.Server().GetEndpoint(callCtx(t), &mailbusv1.GetEndpointRequest{EndpointId: ep.Id})
	if err != nil || got.Endpoint.Secret != "" {
		t.Errorf("GetEndpoint: %v %v", got, err)
	}
}

// TestSecretsSealedAtRest: the bucket holds no signing secret in the
// clear.
func TestSecretsSealedAtRest(t *testing.T) {
	n := startNATS(t)
	svc := startService(t, n, nil)
	ep := createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: "http://example.com/hook", Secret: testSecret})
	e, err := svc.s.endpoints.kv.Get(context.Background(), endpointKeyPrefix+ep.Id)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(e.Value()), testSecret) || strings.Contains(string(e.Value()), "whsec") {
		t.Fatalf("the endpoint record holds the secret: %s", e.Value())
	}
}

// TestPauseKeepsThePlace: a paused endpoint is sent nothing (while an
// active one gets every event), and once active again gets every event
// published meanwhile, in order.
func TestPauseKeepsThePlace(t *testing.T) {
	n := startNATS(t)
	js := n.jetStream(t)
	svc := startService(t, n, nil)
	paused := newReceiver(t, testSecret, nil)
	active := newReceiver(t, testSecret, nil)
	ep := createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: paused.url(), Secret: testSecret, Status: mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_PAUSED})
	createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: active.url(), Secret: testSecret})
	pub := newPublisher(js)
	for range 5 {
		pub.publish(t, "a")
	}
	active.waitAccepted(t, 5)
	if got := paused.requests(); len(got) != 0 {
		t.Fatalf("the paused endpoint got %d requests", len(got))
	}
	if _, err := svc.s.Server().UpdateEndpoint(callCtx(t), &mailbusv1.UpdateEndpointRequest{
		Endpoint:   &mailbusv1.WebhookEndpoint{Id: ep.Id, Status: mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_ACTIVE},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"status"}}}); err != nil {
		t.Fatal(err)
	}
	paused.waitAccepted(t, 5)
	checkOrder(t, paused.accepted(), map[string]int{"a": 5})
}
