package pop3fetcher

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/mailbus/mailbus/pkg/accountrun"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/serving"
)

// Defaults of the zero fields of Config.
const (
	DefaultListen          = "127.0.0.1:7420"
	DefaultMetricsListen   = "127.0.0.1:7421"
	DefaultMaxMessageSize  = 64 << 20
	DefaultRefresh         = accountrun.DefaultRefresh
	DefaultTimeout         = pop3.DefaultTimeout
	DefaultPipelineWindow  = pop3.DefaultPipelineWindow
	DefaultFlushMessages   = 256
	DefaultFlushBytes      = 16 << 20
	DefaultRetryMin        = 10 * time.Second
	DefaultRetryMax        = 10 * time.Minute
	DefaultProgressEvery   = 2 * time.Second
	DefaultStatusHeartbeat = 0
	DefaultShutdownGrace   = 5 * time.Second
	DefaultStoreTimeout    = 2 * time.Minute
)

// Config configures a Fetcher. The zero value of each field means its
// default; Store or Conn is required.
type Config struct {
	// Store is the store's gRPC address ("host:port"), used when Conn is
	// nil.
	Store string
	// StoreTLS, when set, dials Store over TLS with it (pkg/grpctls); nil
	// dials in plaintext.
	StoreTLS *tls.Config
	// Conn is an existing connection to the store (tests; the all-in-one
	// binary's in-process channel, pkg/inproc). The Fetcher does not
	// close it.
	Conn grpc.ClientConnInterface
	// Token is the service API token sent to the store at Store (a Conn
	// carries its own credentials).
	Token string

	// Listen is the gRPC address of the health service (default
	// 127.0.0.1:7420), "-" for none (mailbus serve runs the fetcher in
	// its own process); Listener, when set, is used instead.
	Listen   string
	Listener net.Listener
	// TLS, when set, serves gRPC over TLS; without it a non-loopback
	// Listen is refused unless Insecure is set (pkg/serving).
	TLS      *tls.Config
	Insecure bool
	// MetricsListen is the /metrics and /healthz address (default
	// 127.0.0.1:7421); "-" disables it.
	MetricsListen string
	// Logger receives logs; nil discards them. Secrets are never logged.
	Logger *slog.Logger
	// Registry collects metrics; nil means a new one.
	Registry *prometheus.Registry
	// Ready, if set, is called once the gRPC server listens, with its
	// address ("" without one).
	Ready func(addr string)

	// MaxMessageSize: a larger message is skipped and reported in the
	// account status (default 64 MiB, the store's default limit).
	MaxMessageSize int64
	// Refresh is how often the account list is read (default 10 s).
	Refresh time.Duration
	// RootCAs, when set, replaces the system roots for verifying POP3
	// servers (tests with self-signed servers). Accounts with
	// insecure_skip_verify skip verification altogether (with a warning).
	RootCAs *x509.CertPool
	// Timeout bounds every network operation with a POP3 server: dial,
	// handshake and each read and write (default 60 s). A silent server
	// fails the pass after it; a slow but steady one never does.
	Timeout time.Duration
	// PipelineWindow is how many RETR and DELE commands are in flight when
	// the server offers PIPELINING (default 16; 1 turns pipelining off).
	PipelineWindow int
	// FlushMessages and FlushBytes: the fetcher asks the store to commit
	// after this many messages or octets since the last commit (defaults
	// 256 and 16 MiB). Smaller values give earlier acknowledgements (and
	// earlier DELE in delete mode) at the cost of more transactions.
	FlushMessages int
	FlushBytes    int64
	// RetryMin and RetryMax bound the backoff after a temporary error
	// (defaults 10 s and 10 min).
	RetryMin, RetryMax time.Duration
	// ProgressEvery is how often a long pass reports its progress (default
	// 2 s).
	ProgressEvery time.Duration
	// StatusHeartbeat: an unchanged idle status is reported again (with a
	// new last_success_time) at most this often; 0 (the default) reports
	// every pass. The store records a status that only moves
	// last_success_time without an account.status event, so this costs a
	// write, not an event. A pass that stored messages or changed the state
	// or reason reports at once.
	StatusHeartbeat time.Duration
	// ShutdownGrace bounds the work done after the context ends: asking
	// the store to commit the messages already sent in full, DELE of the
	// acknowledged ones and QUIT (default 5 s). With Ownership it is at
	// most half the lease safety margin, so that a worker whose lease is
	// lost stops before another replica may start.
	ShutdownGrace time.Duration
	// StoreTimeout bounds every call to the store (default 2 min), so that
	// a hung store never hangs a worker either: GetAccountSecret, each
	// ReportAccountStatus and each page of RunOnce's ListAccounts must be
	// answered within it, ListUpstreamIds must
	// send its first batch and each next one within it, and an ingest
	// stream on which the store accepts no data and answers nothing for
	// this long while the fetcher waits on it is cut. The pass then fails
	// (temporary), except for a status report, which is only logged.
	// Progress reports are sent by a goroutine of their own and never hold
	// up a download; one not yet sent is replaced by a newer one.
	StoreTimeout time.Duration
	// ExactListSizes names the POP3 servers (account hosts, compared
	// without regard to case; "*" for every server) known to report exact
	// LIST sizes, the size of the message as sent without the CRLF a
	// server appends to a message that does not end in a line break
	// (Dovecot does; pkg/pop3 documents it). For those, that CRLF is
	// dropped (pkg/pop3.TrimAddedCRLF) and the message is stored as
	// delivered. Default none: a message without a final line break is
	// stored with the CRLF, since a server whose LIST sizes are off by two
	// would otherwise lose the real final CRLF of a message.
	ExactListSizes []string
	// SpoolDir holds the temporary files of the no-UIDL content-hash mode
	// (default os.TempDir()).
	SpoolDir string
	// NATSURL is the NATS server whose JetStream KV holds the ownership
	// buckets; used only with Ownership. NATSOptions are added to the
	// connection's options.
	NATSURL     string
	NATSOptions []nats.Option
	// Ownership, when set, makes this process one replica of several: it
	// works only the accounts rendezvous hashing gives it, each under a
	// lease (pkg/ownership), and sends the lease's fencing token with
	// every store write. Its Service is set to "pop3fetcher"; a nil
	// JetStream means a connection to NATSURL. Nil (the default) works
	// every account with token 0 (one replica).
	Ownership *ownership.Config
	// HostLimit paces new connections per POP3 host and bounds how many
	// are open at once (pkg/hostlimit; zero value: 10 per second, a burst
	// of 5, no budget), in every pass (Run, RunOnce, Poll). The limits
	// are per replica.
	HostLimit hostlimit.Config
	// Jitter, when set, replaces the random jitter of poll intervals and
	// backoff (tests): it gets the nominal delay and returns the one to
	// wait.
	Jitter func(time.Duration) time.Duration
}

// exactListSizes reports whether host is listed in ExactListSizes.
func (c *Config) exactListSizes(host string) bool {
	for _, h := range c.ExactListSizes {
		if h == "*" || strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

func (c *Config) setDefaults() error {
	if c.Conn == nil && c.Store == "" {
		return errors.New("pop3fetcher: no store: set Store (--store) to the store's gRPC address")
	}
	if c.Ownership != nil && c.Ownership.JetStream == nil && c.NATSURL == "" {
		return errors.New("pop3fetcher: ownership needs NATS: set NATSURL (--nats)")
	}
	if c.Listen == "" && c.Listener == nil {
		c.Listen = DefaultListen
	}
	if c.Listener == nil && c.Listen != serving.NoGRPC {
		if _, err := grpctls.CheckListen(c.Listen, c.TLS != nil, c.Insecure); err != nil {
			return fmt.Errorf("pop3fetcher: --listen %w", err)
		}
	}
	switch c.MetricsListen {
	case "":
		c.MetricsListen = DefaultMetricsListen
	case "-":
		c.MetricsListen = ""
	}
	if c.MetricsListen != "" && c.MetricsListen != "-" {
		if _, err := grpctls.CheckListen(c.MetricsListen, c.TLS != nil, c.Insecure); err != nil {
			return fmt.Errorf("pop3fetcher: --metrics-listen %w", err)
		}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registry == nil {
		c.Registry = prometheus.NewRegistry()
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.Refresh, DefaultRefresh)
	def(&c.Timeout, DefaultTimeout)
	def(&c.RetryMin, DefaultRetryMin)
	def(&c.RetryMax, DefaultRetryMax)
	def(&c.ProgressEvery, DefaultProgressEvery)
	def(&c.StatusHeartbeat, DefaultStatusHeartbeat)
	def(&c.ShutdownGrace, DefaultShutdownGrace)
	def(&c.StoreTimeout, DefaultStoreTimeout)
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.PipelineWindow <= 0 {
		c.PipelineWindow = DefaultPipelineWindow
	}
	if c.FlushMessages <= 0 {
		c.FlushMessages = DefaultFlushMessages
	}
	if c.FlushBytes <= 0 {
		c.FlushBytes = DefaultFlushBytes
	}
	return nil
}
