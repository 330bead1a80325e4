// Command mailbus-pop3fetcher runs the mailbus POP3 fetcher service: see
// package pop3fetcher.
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/replicaflag"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := pflag.NewFlagSet("mailbus-pop3fetcher", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `mailbus-pop3fetcher: the mailbus POP3 fetcher. It downloads every POP3
account of the store (keep or delete mode) into the store, byte-exact; in
delete mode it deletes a message on the server only once the store has it.

Usage: mailbus-pop3fetcher [flags]

Examples:
  mailbus-pop3fetcher --store 127.0.0.1:7400
  MAILBUS_STORE=store:7400 mailbus-pop3fetcher --listen 0.0.0.0:7420 --metrics-listen 0.0.0.0:7421 --log-format json \
      --tls-cert pop3fetcher.pem --tls-key pop3fetcher-key.pem --tls-ca services-ca.pem
  mailbus-pop3fetcher --store 127.0.0.1:7400 --once     # one pass of every account, then exit
  # one of several replicas sharing the accounts (each run by one replica at a time):
  mailbus-pop3fetcher --store store:7400 --nats nats://nats:4222 --ownership --kv-replicas 3

Flags:
`)
		fs.PrintDefaults()
	}
	cmd := envflag.NewCommand("mailbus-pop3fetcher", fs)
	var (
		listen        = envflag.String(fs, "listen", "MAILBUS_LISTEN", pop3fetcher.DefaultListen, "gRPC listen address (health, reflection)")
		metricsListen = envflag.String(fs, "metrics-listen", "MAILBUS_METRICS_LISTEN", pop3fetcher.DefaultMetricsListen, "HTTP address for /metrics and /healthz; - disables")
		storeAddr     = envflag.String(fs, "store", "MAILBUS_STORE", "127.0.0.1:7400", "the store's gRPC address")
		maxSize       = envflag.Int64(fs, "max-message-size", "MAILBUS_MAX_MESSAGE_SIZE", pop3fetcher.DefaultMaxMessageSize, "larger messages are left on the server and reported, in bytes")
		timeout       = envflag.Duration(fs, "timeout", "MAILBUS_POP3_TIMEOUT", pop3fetcher.DefaultTimeout, "deadline of every network operation with a POP3 server")
		refresh       = envflag.Duration(fs, "refresh", "MAILBUS_POP3_REFRESH", pop3fetcher.DefaultRefresh, "how often the account list is read (the safety net: the store announces account changes at once)")
		window        = envflag.Int64(fs, "pipeline-window", "MAILBUS_POP3_PIPELINE_WINDOW", pop3fetcher.DefaultPipelineWindow, "RETR commands in flight when the server offers PIPELINING; 1 disables")
		caFile        = envflag.String(fs, "ca-file", "MAILBUS_POP3_CA_FILE", "", "PEM file of CA certificates to trust for POP3 servers instead of the system roots")
		spoolDir      = envflag.String(fs, "spool-dir", "MAILBUS_POP3_SPOOL_DIR", "", "directory for temporary files (servers without UIDL); default the system's")
		exactSizes    = envflag.String(fs, "exact-list-sizes", "MAILBUS_POP3_EXACT_LIST_SIZES", "", "comma-separated POP3 hosts known to report exact LIST sizes (Dovecot does), or *: a message without a final line break is stored without the CRLF the server appends")
		tokenFile     = envflag.String(fs, "token-file", "MAILBUS_TOKEN_FILE", "", "file with the service API token for the store (the store's --service-token-file); or set MAILBUS_TOKEN")
		once          = envflag.Bool(fs, "once", "MAILBUS_POP3_ONCE", false, "run one pass of every account that is not parked, then exit (1 if any failed)")
		natsURL       = envflag.String(fs, "nats", "MAILBUS_NATS", "", "NATS server URL whose JetStream KV holds the account leases (with --ownership)")
		replica       = replicaflag.Define(fs)
		tlsFlags      = grpctls.AddServerFlags(fs)
		storeTLSFlags = grpctls.AddClientFlags(fs)
	)
	log, code, ok := cmd.Parse(args)
	if !ok {
		return code
	}
	if *storeAddr == "" {
		fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher: --store is required")
		return 2
	}
	if *window < 1 || *window > 1000 {
		fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher: --pipeline-window must be 1 to 1000")
		return 2
	}
	own, err := replica.Ownership()
	if err == nil && own != nil && *natsURL == "" {
		err = errors.New("--ownership needs --nats")
	}
	if err == nil && own != nil && *once {
		err = errors.New("--once works every account: it cannot be combined with --ownership")
	}
	hostLimit, herr := replica.HostLimit()
	if err = errors.Join(err, herr); err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher:", err)
		return 2
	}
	token, terr := apitoken.Resolve("", *tokenFile, nil)
	if terr != nil {
		fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher:", terr)
		return 2
	}
	if token == "" {
		log.Warn("no API token (--token-file or MAILBUS_TOKEN): the store will refuse every call")
	}
	tlsServer := tlsFlags.Server()
	certs, err := tlsServer.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher:", err)
		return 2
	}
	storeTLS, err := storeTLSFlags.Client(tlsServer).TLSConfigWith(certs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher:", err)
		return 2
	}
	cfg := pop3fetcher.Config{
		TLS: certs.TLSConfig(), Insecure: tlsServer.Insecure, StoreTLS: storeTLS,
		Store: *storeAddr, Token: token, Listen: *listen, MetricsListen: *metricsListen, Logger: log,
		MaxMessageSize: *maxSize, Timeout: *timeout, Refresh: *refresh, PipelineWindow: int(*window),
		SpoolDir: *spoolDir, NATSURL: *natsURL, Ownership: own, HostLimit: hostLimit,
	}
	for _, h := range strings.Split(*exactSizes, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.ExactListSizes = append(cfg.ExactListSizes, h)
		}
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher:", err)
			return 1
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			fmt.Fprintf(os.Stderr, "mailbus-pop3fetcher: %s holds no PEM certificate\n", *caFile)
			return 1
		}
	}
	f, err := pop3fetcher.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-pop3fetcher:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// New connections get renewed certificates (SIGHUP or a change of the
	// files); established ones keep theirs.
	certs.Watch(ctx, grpctls.WatchOptions{Logger: log})
	if *once {
		if err := f.RunOnce(ctx); err != nil {
			log.Error("pass failed", "err", err)
			return 1
		}
		return 0
	}
	if err := f.Run(ctx); err != nil {
		log.Error("pop3fetcher failed", "err", err)
		return 1
	}
	return 0
}
