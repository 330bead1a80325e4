package webhooks

import (
	"net/http"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// failFirst fails the first attempt of every event and accepts the next.
func failFirst(_ string, attempt int) int {
	if attempt == 1 {
		return http.StatusServiceUnavailable
	}
	return http.StatusOK
}

// TestNoLossAcrossRestarts: every event is delivered, in order per
// account, while the service is stopped and started again (another
// process takes the endpoint over) and while NATS restarts; at most the
// event in flight at a NATS restart is sent twice.
func TestNoLossAcrossRestarts(t *testing.T) {
	n := startNATS(t)
	js := n.jetStream(t)
	rcv := newReceiver(t, testSecret, failFirst)
	svc := startService(t, n, nil)
	createEndpoint(t, svc.s, &mailbusv1.WebhookEndpoint{Url: rcv.url(), Secret: testSecret})
	pub := newPublisher(js)
	accounts := []string{"a", "b", "c"}
	want := map[string]int{}
	publish := func(k int) {
		for i := range k {
			a := accounts[i%len(accounts)]
			pub.publish(t, a)
			want[a]++
		}
	}
	total := func() int { return want["a"] + want["b"] + want["c"] }

	publish(30)
	rcv.waitAccepted(t, 10)
	svc.stop()
	publish(30)
	svc2 := startService(t, n, nil)
	rcv.waitAccepted(t, 40)
	n.restart()
	publish(30)
	rcv.waitAccepted(t, total())
	// A second replica meanwhile: the endpoint stays with one of them.
	startService(t, n, nil)
	publish(30)
	rcv.waitAccepted(t, total())
	svc2.stop()
	publish(30)
	rcv.waitAccepted(t, total())
	dups := checkOrder(t, rcv.accepted(), want)
	if dups > 1 {
		t.Errorf("%d events accepted twice; at most the one in flight at the NATS restart may be", dups)
	}
	t.Logf("%d events, %d requests, %d sent twice", total(), len(rcv.requests()), dups)
	seen := map[string]int{}
	for i, x := range rcv.accepted() {
		if j, ok := seen[x.eventID]; ok {
			t.Logf("%s accepted at %d and %d", x.eventID, j, i)
		}
		seen[x.eventID] = i
	}
}
