package webhooks

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the service's Prometheus metrics.
type metrics struct {
	attempts   *prometheus.CounterVec
	deliveries *prometheus.CounterVec
	duration   prometheus.Histogram
	endpoints  prometheus.Gauge
	retrying   prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailbus_webhooks_attempts_total",
			Help: "POSTs to webhook endpoints, by result (ok: a 2xx answer; failed)."}, []string{"result"}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mailbus_webhooks_deliveries_total",
			Help: "Deliveries finished, by status (delivered, dead_lettered)."}, []string{"status"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "mailbus_webhooks_attempt_duration_seconds",
			Help: "Duration of one POST, answered or not.", Buckets: prometheus.ExponentialBuckets(0.001, 4, 9)}),
		endpoints: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailbus_webhooks_endpoints",
			Help: "Endpoints this replica has a worker for (one replica at a time delivers each)."}),
		retrying: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mailbus_webhooks_retrying",
			Help: "Deliveries of this replica waiting for their next attempt after a failure."}),
	}
	for _, c := range []prometheus.Collector{m.attempts, m.deliveries, m.duration, m.endpoints, m.retrying} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("webhooks: metrics: %w", err)
		}
	}
	return m, nil
}
