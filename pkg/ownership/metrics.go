package ownership

import "github.com/prometheus/client_golang/prometheus"

// metrics are the Manager's Prometheus metrics, labelled by service.
type metrics struct {
	members  prometheus.Gauge
	held     prometheus.Gauge
	acquired prometheus.Counter
	lost     prometheus.Counter
	released prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, service string) (*metrics, error) {
	labels := prometheus.Labels{"service": service}
	m := &metrics{
		members: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailbus_ownership_members", ConstLabels: labels,
			Help: "Live replicas of the service in this replica's view (rendezvous hashing is over these).",
		}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "mailbus_ownership_leases_held", ConstLabels: labels,
			Help: "Account leases this replica holds.",
		}),
		acquired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_ownership_leases_acquired_total", ConstLabels: labels,
			Help: "Account leases taken.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_ownership_leases_lost_total", ConstLabels: labels,
			Help: "Account leases lost: a renewal refused, or none before the local deadline.",
		}),
		released: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_ownership_leases_released_total", ConstLabels: labels,
			Help: "Account leases given back (handoff, shutdown, account moved).",
		}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.members, m.held, m.acquired, m.lost, m.released} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	return m, nil
}
