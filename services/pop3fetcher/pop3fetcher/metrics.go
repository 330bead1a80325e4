package pop3fetcher

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Error kinds: the kind label of mailbus_pop3_errors_total and PassError.Kind.
const (
	KindAuth       = "auth"        // credentials refused, mechanism not offered
	KindTLS        = "tls"         // certificate not trusted or mismatching, STLS not offered
	KindNetwork    = "network"     // connection refused, reset or closed
	KindTimeout    = "timeout"     // no progress within Config.Timeout
	KindProtocol   = "protocol"    // an answer that does not follow POP3
	KindInUse      = "in_use"      // -ERR [IN-USE]: another session holds the maildrop
	KindLoginDelay = "login_delay" // -ERR [LOGIN-DELAY]: logged in too soon
	KindServer     = "server"      // other -ERR answers ([SYS/TEMP], [SYS/PERM], a refused command)
	KindTooLarge   = "too_large"   // a message above the size limit (skipped, not a pass failure)
	KindRefused    = "refused"     // a message the store refused (skipped, not a pass failure)
	KindStore      = "store"       // the store could not be reached or failed
	KindQuit       = "quit"        // QUIT failed: deletions may not have been applied
	KindConfig     = "config"      // the account's configuration cannot work
	KindReauth     = "reauth"      // OAuth 2.0: the refresh token was refused; the store parked the account
)

var errorKinds = []string{KindAuth, KindTLS, KindNetwork, KindTimeout, KindProtocol, KindInUse,
	KindLoginDelay, KindServer, KindTooLarge, KindRefused, KindStore, KindQuit, KindConfig}

// Worker states: the state label of mailbus_pop3_accounts.
const (
	stateActive   = "active"   // polling normally
	stateRetrying = "retrying" // backing off after a temporary error
	stateParked   = "parked"   // stopped after a permanent error until the account is updated
)

type metrics struct {
	fetched  prometheus.Counter
	bytes    prometheus.Counter
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
	accounts *prometheus.GaugeVec
	// staleLeases counts workers stopped because the store refused their
	// lease token (another replica claimed the account).
	staleLeases prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		fetched: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_pop3_messages_fetched_total",
			Help: "Messages downloaded from POP3 servers and durably acknowledged by the store.",
		}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_pop3_bytes_fetched_total",
			Help: "Octets of the messages counted by mailbus_pop3_messages_fetched_total.",
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailbus_pop3_errors_total",
			Help: "Failed poll passes and skipped messages, by kind (auth, tls, network, timeout, protocol, in_use, login_delay, server, too_large, refused, store, quit, config).",
		}, []string{"kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "mailbus_pop3_poll_duration_seconds",
			Help:    "Duration of one poll pass of one account, by result (ok, error).",
			Buckets: []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900},
		}, []string{"result"}),
		accounts: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mailbus_pop3_accounts",
			Help: "POP3 accounts this fetcher runs, by state (active, retrying, parked).",
		}, []string{"state"}),
		staleLeases: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_pop3_stale_lease_stops_total",
			Help: "Account workers stopped because the store refused their lease token: another replica had claimed the account.",
		}),
	}
	for _, c := range []prometheus.Collector{m.fetched, m.bytes, m.errors, m.duration, m.accounts, m.staleLeases} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("pop3fetcher: metrics: %w", err)
		}
	}
	for _, k := range errorKinds {
		m.errors.WithLabelValues(k)
	}
	for _, s := range []string{stateActive, stateRetrying, stateParked} {
		m.accounts.WithLabelValues(s)
	}
	return m, nil
}
