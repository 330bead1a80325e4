// Command mailbus-imapsync runs the mailbus IMAP sync service: see package
// imapsync.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/replicaflag"
	"github.com/mailbus/mailbus/pkg/serving"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := pflag.NewFlagSet("mailbus-imapsync", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `mailbus-imapsync: two-way sync of every IMAP account in the mailbus store
(initial and delta sync, IDLE push, write-back of device changes).

Usage: mailbus-imapsync [flags]

Examples:
  mailbus-imapsync --store 127.0.0.1:7400 --nats nats://127.0.0.1:4222
  MAILBUS_STORE=store:7400 mailbus-imapsync --listen 0.0.0.0:7410 \
      --tls-cert imapsync.pem --tls-key imapsync-key.pem --tls-ca services-ca.pem
  # one of several replicas sharing the accounts (each run by one replica at a time):
  mailbus-imapsync --store store:7400 --nats nats://nats:4222 --ownership --kv-replicas 3

Flags:
`)
		fs.PrintDefaults()
	}
	cmd := envflag.NewCommand("mailbus-imapsync", fs)
	var (
		listen        = envflag.String(fs, "listen", "MAILBUS_LISTEN", imapsync.DefaultListen, "gRPC listen address (health, reflection)")
		metricsListen = envflag.String(fs, "metrics-listen", "MAILBUS_METRICS_LISTEN", imapsync.DefaultMetricsListen, "HTTP address for /metrics and /healthz; - disables")
		storeAddr     = envflag.String(fs, "store", "MAILBUS_STORE", "127.0.0.1:7400", "the store's gRPC address")
		natsURL       = envflag.String(fs, "nats", "MAILBUS_NATS", "nats://127.0.0.1:4222", "NATS server URL (wakes write-backs early; holds the account leases with --ownership); empty polls only")
		timeout       = envflag.Duration(fs, "timeout", "MAILBUS_IMAP_TIMEOUT", imapsync.DefaultTimeout, "deadline of every upstream operation")
		pollInterval  = envflag.Duration(fs, "poll-interval", "MAILBUS_POLL_INTERVAL", imapsync.DefaultPollInterval, "how often every folder is checked when the account sets none: a STATUS poll of folders that are not IDLEd, and a check of an IDLEd folder whose IDLE carried nothing for this long")
		wbPoll        = envflag.Duration(fs, "writeback-poll", "MAILBUS_WRITEBACK_POLL", imapsync.DefaultWriteBackPoll, "how often pending write-backs are looked for without a NATS wake-up")
		connections   = envflag.Int64(fs, "connections", "MAILBUS_IMAP_CONNECTIONS", imapsync.DefaultConnections, "IMAP connections per account: one for work, the rest IDLE on INBOX and the account's idle folders; 1 IDLEs INBOX on the work connection between steps (half the memory and server sessions of an idle account)")
		grace         = envflag.Duration(fs, "shutdown-grace", "MAILBUS_SHUTDOWN_GRACE", imapsync.DefaultShutdownGrace, "how long the step in progress may go on after SIGTERM before connections are closed")
		idleRestart   = envflag.Duration(fs, "idle-restart", "MAILBUS_IDLE_RESTART", imapsync.DefaultIdleRestart, "how often IDLE is ended and issued again, with a NOOP round trip between (finds a dead IDLE connection)")
		maxSize       = envflag.Int64(fs, "max-message-size", "MAILBUS_MAX_MESSAGE_SIZE", imapsync.DefaultMaxMessageSize, "larger messages (by RFC822.SIZE) are left on the server without being downloaded, in bytes; keep it at most the store's")
		replica       = replicaflag.Define(fs)
		tlsFlags      = grpctls.AddServerFlags(fs)
		storeTLSFlags = grpctls.AddClientFlags(fs)
		tokenFile     = envflag.String(fs, "token-file", "MAILBUS_TOKEN_FILE", "", "file with the service API token for the store (the store's --service-token-file); or set MAILBUS_TOKEN")
	)
	log, code, ok := cmd.Parse(args)
	if !ok {
		return code
	}
	token, err := apitoken.Resolve("", *tokenFile, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-imapsync:", err)
		return 2
	}
	if token == "" {
		log.Warn("no API token (--token-file or MAILBUS_TOKEN): the store will refuse every call")
	}
	own, err := replica.Ownership()
	if err == nil && own != nil && *natsURL == "" {
		err = errors.New("--ownership needs --nats")
	}
	hostLimit, herr := replica.HostLimit()
	if err = errors.Join(err, herr); err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-imapsync:", err)
		return 2
	}
	tlsServer := tlsFlags.Server()
	certs, err := tlsServer.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-imapsync:", err)
		return 2
	}
	storeTLS, err := storeTLSFlags.Client(tlsServer).TLSConfigWith(certs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-imapsync:", err)
		return 2
	}
	if *connections < 1 || *connections > 100 {
		fmt.Fprintln(os.Stderr, "mailbus-imapsync: --connections must be 1 to 100")
		return 2
	}
	reg := prometheus.NewRegistry()
	serving.RegisterProcessCollectors(reg)
	s, err := imapsync.New(imapsync.Config{
		TLS: certs.TLSConfig(), Insecure: tlsServer.Insecure, StoreTLS: storeTLS, Registry: reg,
		StoreAddr: *storeAddr, Token: token, Listen: *listen, MetricsListen: *metricsListen, NATSURL: *natsURL,
		Timeout: *timeout, PollInterval: *pollInterval, WriteBackPoll: *wbPoll, ShutdownGrace: *grace, Logger: log,
		Ownership: own, HostLimit: hostLimit, MaxMessageSize: *maxSize, IdleRestart: *idleRestart,
		Connections: int(*connections),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-imapsync:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// New connections get renewed certificates (SIGHUP or a change of the
	// files); established ones keep theirs.
	certs.Watch(ctx, grpctls.WatchOptions{Logger: log})
	if err := s.Run(ctx); err != nil {
		log.Error("imapsync failed", "err", err)
		return 1
	}
	return 0
}
