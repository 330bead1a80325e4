// Command mailbus-webhooks runs the mailbus webhooks service: see package
// webhooks.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/pkg/serving"
	"github.com/mailbus/mailbus/services/webhooks/webhooks"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	fs := pflag.NewFlagSet("mailbus-webhooks", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `mailbus-webhooks: delivers mailbus events to HTTP endpoints, signed and
retried, in order per account; serves WebhookService (admin tokens).

Usage: mailbus-webhooks [flags]

Examples:
  mailbus-webhooks --nats nats://127.0.0.1:4222 --store 127.0.0.1:7400 \
      --token-file service.token --secret-key-file key
  # one of several replicas (they share the endpoints through JetStream):
  mailbus-webhooks --nats nats://nats:4222 --store store:7400 --kv-replicas 3 ...

Flags:
`)
		fs.PrintDefaults()
	}
	cmd := envflag.NewCommand("mailbus-webhooks", fs)
	var (
		listen         = envflag.String(fs, "listen", "MAILBUS_LISTEN", webhooks.DefaultListen, "gRPC listen address (WebhookService, health, reflection)")
		metricsListen  = envflag.String(fs, "metrics-listen", "MAILBUS_METRICS_LISTEN", webhooks.DefaultMetricsListen, "HTTP address for /metrics and /healthz; - disables")
		storeAddr      = envflag.String(fs, "store", "MAILBUS_STORE", "127.0.0.1:7400", "the store's gRPC address (message content; checks callers' admin tokens)")
		natsURL        = envflag.String(fs, "nats", "MAILBUS_NATS", "nats://127.0.0.1:4222", "NATS server URL (MAILBUS_EVENTS, the endpoints and deliveries buckets)")
		tokenFile      = envflag.String(fs, "token-file", "MAILBUS_TOKEN_FILE", "", "file with a service (or admin) API token to fetch message content from the store; or set MAILBUS_TOKEN")
		keyFile        = envflag.String(fs, "secret-key-file", "MAILBUS_SECRET_KEY_FILE", "", "file holding the 32-byte key that seals signing secrets at rest (base64 or hex); or set MAILBUS_SECRET_KEY")
		oldKeyFiles    = envflag.String(fs, "old-secret-key-file", "MAILBUS_OLD_SECRET_KEY_FILE", "", "comma-separated files of earlier keys, to open secrets sealed under them")
		allowPrivate   = envflag.Bool(fs, "allow-private-webhooks", "MAILBUS_ALLOW_PRIVATE_WEBHOOKS", false, "allow endpoint URLs on loopback, private and link-local addresses (development only)")
		retryWindow    = envflag.Duration(fs, "retry-window", "MAILBUS_WEBHOOK_RETRY_WINDOW", webhooks.DefaultRetryWindow, "how long a failing delivery is retried before it is dead-lettered")
		retryMin       = envflag.Duration(fs, "retry-min", "MAILBUS_WEBHOOK_RETRY_MIN", webhooks.DefaultRetryMin, "wait after a first failed attempt (doubled after each failure, with jitter)")
		retryMax       = envflag.Duration(fs, "retry-max", "MAILBUS_WEBHOOK_RETRY_MAX", webhooks.DefaultRetryMax, "longest wait between two attempts")
		ackWait        = envflag.Duration(fs, "ack-wait", "MAILBUS_WEBHOOK_ACK_WAIT", webhooks.DefaultAckWait, "how long after a replica vanished (crash) its event in flight goes to another")
		pinnedTTL      = envflag.Duration(fs, "pinned-ttl", "MAILBUS_WEBHOOK_PINNED_TTL", webhooks.DefaultPinnedTTL, "how long after a replica vanished its endpoints go to another replica")
		requestTimeout = envflag.Duration(fs, "request-timeout", "MAILBUS_WEBHOOK_TIMEOUT", webhooks.DefaultRequestTimeout, "deadline of one POST")
		retention      = envflag.Duration(fs, "delivery-retention", "MAILBUS_WEBHOOK_DELIVERY_RETENTION", webhooks.DefaultDeliveryRetention, "how long delivery records (ListDeliveries) are kept")
		kvReplicas     = envflag.Int64(fs, "kv-replicas", "MAILBUS_KV_REPLICAS", 1, "replicas of the buckets and stream the service creates")
		tlsFlags       = grpctls.AddServerFlags(fs)
		storeTLSFlags  = grpctls.AddClientFlags(fs)
	)
	log, code, ok := cmd.Parse(args)
	if !ok {
		return code
	}
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "mailbus-webhooks:", err)
		return 2
	}
	token, err := apitoken.Resolve("", *tokenFile, nil)
	if err != nil {
		return fail(err)
	}
	if token == "" {
		log.Warn("no API token (--token-file or MAILBUS_TOKEN): message content cannot be fetched from the store")
	}
	var key []byte
	switch {
	case *keyFile != "":
		key, err = secretbox.LoadKeyFile(*keyFile)
	case os.Getenv("MAILBUS_SECRET_KEY") != "":
		key, err = secretbox.ParseKey(os.Getenv("MAILBUS_SECRET_KEY"))
	}
	if err != nil {
		return fail(err)
	}
	oldKeys, err := secretbox.LoadKeyFiles(*oldKeyFiles)
	if err != nil {
		return fail(err)
	}
	tlsServer := tlsFlags.Server()
	certs, err := tlsServer.Load()
	if err != nil {
		return fail(err)
	}
	storeTLS, err := storeTLSFlags.Client(tlsServer).TLSConfigWith(certs)
	if err != nil {
		return fail(err)
	}
	reg := prometheus.NewRegistry()
	serving.RegisterProcessCollectors(reg)
	s, err := webhooks.New(webhooks.Config{
		NATSURL: *natsURL, StoreAddr: *storeAddr, StoreTLS: storeTLS, Token: token,
		Listen: *listen, MetricsListen: *metricsListen, TLS: certs.TLSConfig(), Insecure: tlsServer.Insecure,
		SecretKey: key, OldSecretKeys: oldKeys, AllowPrivate: *allowPrivate,
		RetryWindow: *retryWindow, RetryMin: *retryMin, RetryMax: *retryMax, AckWait: *ackWait, PinnedTTL: *pinnedTTL,
		RequestTimeout: *requestTimeout, DeliveryRetention: *retention,
		KVReplicas: int(*kvReplicas), Logger: log, Registry: reg,
	})
	if err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	certs.Watch(ctx, grpctls.WatchOptions{Logger: log})
	if err := s.Run(ctx); err != nil {
		log.Error("webhooks failed", "err", err)
		return 1
	}
	return 0
}
