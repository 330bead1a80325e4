package relay

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	published  prometheus.Counter
	duplicates prometheus.Counter
	dropped    prometheus.Counter
	errors     prometheus.Counter
	lag        prometheus.Gauge
	leader     prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mailbus", Subsystem: "relay", Name: "events_published_total",
			Help: "Outbox events acknowledged by JetStream and marked published.",
		}),
		duplicates: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mailbus", Subsystem: "relay", Name: "events_duplicate_total",
			Help: "Republished outbox events that JetStream acknowledged as duplicates (not stored again).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mailbus", Subsystem: "relay", Name: "events_dropped_total",
			Help: "Outbox events that could never be published (no event id, bad subject), marked published without publishing.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "mailbus", Subsystem: "relay", Name: "publish_errors_total",
			Help: "Failed relay passes (outbox read, stream check, publish or mark published); each is retried.",
		}),
		lag: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mailbus", Subsystem: "relay", Name: "outbox_lag",
			Help: "Unpublished outbox events seen by the last pass (at most the batch size).",
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "mailbus", Subsystem: "relay", Name: "leader",
			Help: "1 while this relay leads and publishes, else 0.",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.published, m.duplicates, m.dropped, m.errors, m.lag, m.leader} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("relay: register metrics: %w", err)
		}
	}
	return m, nil
}
