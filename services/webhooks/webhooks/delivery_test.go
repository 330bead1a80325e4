package webhooks

import (
	"fmt"
	"net/http"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

const testSecret = "whsec_test_0123456789abcdef"

// TestDeliversSignedInOrder: every event reaches the endpoint, signed,
// once per account in state order, although every event's first two
// attempts fail; the deliveries list shows the three attempts of each.
func TestDeliversSignedInOrder(t *testing.T) {
	n := startNATS(t)
	js := n.jetStream(t)
	svc := startService(t, n, nil)
	rcv := newReceiver(t, testSecret, func(_ string, attempt int) int {
		if attempt <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusNoContent
	})
	ep := createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: rcv.url(), Secret: testSecret})
	pub := newPublisher(js)
	want := map[string]int{"a1": 10, "a2": 10, "a3": 10}
	for range 10 {
		for _, a := range []string{"a1", "a2", "a3"} {
			pub.publish(t, a)
		}
	}
	rcv.waitAccepted(t, 30)
	got := rcv.accepted()
	if dups := checkOrder(t, got, want); dups != 0 {
		t.Errorf("%d events accepted twice without a restart", dups)
	}
	if len(got) != 30 {
		t.Errorf("%d accepted requests, want 30", len(got))
	}
	for _, x := range got {
		if x.kind != "message.created" || x.payload.GetEndpointId() != ep.Id || x.payload.GetDeliveryId() == "" {
			t.Fatalf("payload %v", x.payload)
		}
	}
	resp, err := svc.s.Server().ListDeliveries(callCtx(t), &mailbusv1.ListDeliveriesRequest{EndpointId: ep.Id, PageSize: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Deliveries) != 30 {
		t.Fatalf("%d deliveries listed, want 30", len(resp.Deliveries))
	}
	for i, d := range resp.Deliveries {
		if d.Status != mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED || len(d.Attempts) != 3 ||
			d.Attempts[0].HttpStatus != 503 || d.Attempts[2].HttpStatus != 204 || d.Attempts[2].Error != "" {
			t.Errorf("delivery %v", d)
		}
		if i > 0 && parseID(t, d.Id) >= parseID(t, resp.Deliveries[i-1].Id) {
			t.Errorf("deliveries not newest first: %s after %s", d.Id, resp.Deliveries[i-1].Id)
		}
	}
}

func parseID(t *testing.T, id string) uint64 {
	seq, ok := parseDeliveryID(id)
	if !ok {
		t.Fatalf("delivery id %q", id)
	}
	return seq
}

// TestFilters: an endpoint gets the events of its accounts and kinds
// only.
func TestFilters(t *testing.T) {
	n := startNATS(t)
	js := n.jetStream(t)
	svc := startService(t, n, nil)
	only := newReceiver(t, testSecret, nil)
	all := newReceiver(t, testSecret, nil)
	createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: only.url(), Secret: testSecret, AccountIds: []string{"b"}, EventKinds: []string{"message.created"}})
	createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: all.url(), Secret: testSecret})
	pub := newPublisher(js)
	for range 3 {
		pub.publish(t, "a")
		pub.publish(t, "b")
	}
	all.waitAccepted(t, 6)
	only.waitAccepted(t, 3)
	for _, x := range only.accepted() {
		if x.account != "b" {
			t.Errorf("endpoint of account b got an event of %s", x.account)
		}
	}
}

// TestFailingEndpointDoesNotHoldBackAnother: an endpoint that never
// answers (its handler waits until the test ends) and one that always
// fails do not keep a third from getting every event.
func TestFailingEndpointDoesNotHoldBackAnother(t *testing.T) {
	n := startNATS(t)
	js := n.jetStream(t)
	svc := startService(t, n, func(c *Config) { c.RequestTimeout = waitFor })
	hang := make(chan struct{})
	hanging := newReceiver(t, testSecret, func(string, int) int { <-hang; return 200 })
	t.Cleanup(func() { close(hang) })
	failing := newReceiver(t, testSecret, func(string, int) int { return 500 })
	good := newReceiver(t, testSecret, nil)
	for _, r := range []*receiver{hanging, failing, good} {
		createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: r.url(), Secret: testSecret})
	}
	pub := newPublisher(js)
	for i := range 50 {
		pub.publish(t, fmt.Sprintf("acct%d", i%5))
	}
	good.waitAccepted(t, 50)
	checkOrder(t, good.accepted(), map[string]int{"acct0": 10, "acct1": 10, "acct2": 10, "acct3": 10, "acct4": 10})
	if got := len(hanging.accepted()); got != 0 {
		t.Errorf("the hanging endpoint answered %d", got)
	}
	if got := len(failing.accepted()); got != 0 {
		t.Errorf("the failing endpoint accepted %d", got)
	}
	// The failing endpoint retries its first event and sends no other. Its
	// first attempt may come after the good endpoint has them all.
	failing.waitRequests(t, 1)
	ids := map[string]bool{}
	for _, x := range failing.requests() {
		ids[x.eventID] = true
	}
	if len(ids) != 1 {
		t.Errorf("the failing endpoint was sent %d different events, want only the first, retried", len(ids))
	}
}
