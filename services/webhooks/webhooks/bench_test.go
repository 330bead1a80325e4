package webhooks

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/webhooksig"
)

// countingReceiver counts the requests whose signature verifies; it
// answers status.
func countingReceiver(b *testing.B, status int) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if webhooksig.Verify(r.Header.Get(webhooksig.Header), body, []byte(testSecret), time.Now(), 0) != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if status == http.StatusOK {
			n.Add(1)
		}
		w.WriteHeader(status)
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

// publishAsync publishes n message.created events over accounts accounts.
func publishAsync(b *testing.B, js jetstream.JetStream, n, accounts int) {
	for i := range n {
		a := fmt.Sprintf("acct%d", i%accounts)
		ev := &mailbusv1.Event{Id: fmt.Sprintf("bench-%d", i), AccountId: a, State: uint64(i/accounts + 1), Time: timestamppb.Now(),
			Payload: &mailbusv1.Event_MessageCreated{MessageCreated: &mailbusv1.MessageCreated{Message: &mailbusv1.MessageSummary{Id: fmt.Sprint(i), AccountId: a}}}}
		data, _ := events.Marshal(ev)
		subject, _ := events.Subject(ev)
		if _, err := js.PublishAsync(subject, data, jetstream.WithMsgID(ev.Id)); err != nil {
			b.Fatal(err)
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(time.Minute):
		b.Fatal("publish not complete")
	}
}

func waitCount(b *testing.B, counts []*atomic.Int64, want int64) {
	deadline := time.Now().Add(10 * time.Minute)
	for _, c := range counts {
		for c.Load() < want {
			if time.Now().After(deadline) {
				b.Fatalf("%d of %d delivered", c.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// BenchmarkOneEndpoint: events per second to one loopback endpoint
// (issue 13's target: 1,000/s), the events spread over 100 accounts or
// all of one.
func BenchmarkOneEndpoint(b *testing.B) {
	for _, accounts := range []int{1, 100} {
		b.Run(fmt.Sprintf("accounts=%d", accounts), func(b *testing.B) {
			n := startNATS(b)
			js := n.jetStream(b)
			svc := startService(b, n, func(c *Config) { c.Logger = nil }).s
			srv, count := countingReceiver(b, http.StatusOK)
			if _, err := svc.Server().CreateEndpoint(context.Background(), &mailbusv1.CreateEndpointRequest{Endpoint: &mailbusv1.WebhookEndpoint{Url: srv.URL, Secret: testSecret}}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			start := time.Now()
			publishAsync(b, js, b.N, accounts)
			waitCount(b, []*atomic.Int64{count}, int64(b.N))
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		})
	}
}

// BenchmarkHundredEndpoints: 100 endpoints get every event; with
// failing=10, ten of them answer 500 to everything. Reported: events per
// second that reach every one of the 90 working endpoints, and the
// deliveries per second in all.
func BenchmarkHundredEndpoints(b *testing.B) {
	for _, failing := range []int{0, 10} {
		b.Run(fmt.Sprintf("failing=%d", failing), func(b *testing.B) {
			n := startNATS(b)
			js := n.jetStream(b)
			svc := startService(b, n, func(c *Config) { c.Logger = nil }).s
			var counts []*atomic.Int64
			for i := range 100 {
				status := http.StatusOK
				if i < failing {
					status = http.StatusInternalServerError
				}
				srv, count := countingReceiver(b, status)
				if status == http.StatusOK {
					counts = append(counts, count)
				}
				if _, err := svc.Server().CreateEndpoint(context.Background(), &mailbusv1.CreateEndpointRequest{Endpoint: &mailbusv1.WebhookEndpoint{Url: srv.URL, Secret: testSecret}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			start := time.Now()
			publishAsync(b, js, b.N, 100)
			waitCount(b, counts, int64(b.N))
			d := time.Since(start).Seconds()
			b.ReportMetric(float64(b.N)/d, "events/s")
			b.ReportMetric(float64(b.N*len(counts))/d, "deliveries/s")
		})
	}
}
