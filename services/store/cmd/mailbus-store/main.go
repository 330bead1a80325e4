// Command mailbus-store runs the mailbus store service: see package store.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/store"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	if len(args) > 0 && args[0] == "migrate" {
		return migrateMain(args[1:])
	}
	fs := pflag.NewFlagSet("mailbus-store", pflag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `mailbus-store: the mailbus store service (accounts, mailboxes, messages,
change log and events).

Usage: mailbus-store [flags]
       mailbus-store migrate status|up [--data DIR | --database-url URL]

Examples:
  mailbus-store --data ./mailbus-data --nats nats://127.0.0.1:4222 --secret-key-file key
  mailbus-store --listen 0.0.0.0:7400 --tls-cert store.pem --tls-key store-key.pem \
      --tls-client-ca services-ca.pem --secret-key-file key
  MAILBUS_SECRET_KEY=$(head -c32 /dev/urandom | base64) mailbus-store \
      --database-url postgres://mailbus@db/mailbus --nats nats://nats:4222

Flags:
`)
		fs.PrintDefaults()
	}
	cmd := envflag.NewCommand("mailbus-store", fs)
	var (
		listen         = envflag.String(fs, "listen", "MAILBUS_LISTEN", store.DefaultListen, "API listen address: gRPC, Connect and gRPC-Web")
		metricsListen  = envflag.String(fs, "metrics-listen", "MAILBUS_METRICS_LISTEN", store.DefaultMetricsListen, "HTTP address for /metrics, /healthz (liveness) and /readyz (readiness); - disables")
		natsURL        = envflag.String(fs, "nats", "MAILBUS_NATS", "nats://127.0.0.1:4222", "NATS server URL; empty keeps events in the outbox")
		dataDir        = envflag.String(fs, "data", "MAILBUS_DATA", "./mailbus-data", "data directory for the SQLite database")
		databaseURL    = envflag.String(fs, "database-url", "MAILBUS_DATABASE_URL", "", "PostgreSQL URL (postgres://...); empty means SQLite in --data")
		keyFile        = envflag.String(fs, "secret-key-file", "MAILBUS_SECRET_KEY_FILE", "", "file holding the 32-byte credentials key (base64 or hex); or set MAILBUS_SECRET_KEY")
		oldKeyFiles    = envflag.String(fs, "old-secret-key-file", "MAILBUS_OLD_SECRET_KEY_FILE", "", "comma-separated files of earlier keys, to open credentials not yet rotated (mailbus key rotate)")
		dev            = envflag.Bool(fs, "dev", "MAILBUS_DEV", false, "development mode: run without a credentials key (a fixed, public one is used)")
		retention      = envflag.Duration(fs, "change-log-retention", "MAILBUS_CHANGE_LOG_RETENTION", store.DefaultRetention, "how long the change log (GetChanges, WatchChanges replay) is kept")
		eventsReplicas = envflag.Int64(fs, "events-replicas", "MAILBUS_EVENTS_REPLICAS", 1, "replicas of the events stream (MAILBUS_EVENTS) when the store creates it: 3 on a 3-node NATS cluster; an existing stream keeps its own (decision 0030)")
		eventsMaxAge   = envflag.Duration(fs, "events-max-age", "MAILBUS_EVENTS_MAX_AGE", 0, "age limit of the events stream when the store creates it (at least 2m, the de-duplication window); 0: --change-log-retention; an existing stream keeps its own (decision 0030)")
		maxSize        = envflag.Int64(fs, "max-message-size", "MAILBUS_MAX_MESSAGE_SIZE", store.DefaultMaxMessageSize, "largest message accepted, in bytes")
		adminToken     = envflag.String(fs, "admin-token-file", "MAILBUS_ADMIN_TOKEN_FILE", "", "file with an admin API token, created (mode 0600) if missing; default <--data>/admin.token; - for none")
		serviceToken   = envflag.String(fs, "service-token-file", "MAILBUS_SERVICE_TOKEN_FILE", "", "file with a service API token for the fetchers (their --token-file), created (mode 0600) if missing")
		corsOrigins    = envflag.StringSlice(fs, "cors-origin", "MAILBUS_CORS_ORIGINS", "let browser pages of this origin (https://app.example.com; * for any) call the API with Connect or gRPC-Web; repeatable; none by default")
		tlsFlags       = grpctls.AddServerFlags(fs)
	)
	log, code, ok := cmd.Parse(args)
	if !ok {
		return code
	}
	cfg := store.Config{
		Listen: *listen, MetricsListen: *metricsListen, NATSURL: *natsURL,
		DataDir: *dataDir, DatabaseURL: *databaseURL, Dev: *dev,
		Retention: *retention, MaxMessageSize: *maxSize, Logger: log,
		EventsReplicas: int(*eventsReplicas), EventsMaxAge: *eventsMaxAge,
		AdminTokenFile: *adminToken, ServiceTokenFile: *serviceToken,
		CORSOrigins: *corsOrigins,
	}
	tlsServer := tlsFlags.Server()
	certs, err := tlsServer.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-store:", err)
		return 2
	}
	cfg.TLS, cfg.Insecure = certs.TLSConfig(), tlsServer.Insecure
	if cfg.OldSecretKeys, err = secretbox.LoadKeyFiles(*oldKeyFiles); err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-store:", err)
		return 1
	}
	switch {
	case *keyFile != "":
		if cfg.SecretKey, err = secretbox.LoadKeyFile(*keyFile); err != nil {
			fmt.Fprintln(os.Stderr, "mailbus-store:", err)
			return 1
		}
	case os.Getenv("MAILBUS_SECRET_KEY") != "":
		if cfg.SecretKey, err = secretbox.ParseKey(os.Getenv("MAILBUS_SECRET_KEY")); err != nil {
			fmt.Fprintln(os.Stderr, "mailbus-store: MAILBUS_SECRET_KEY:", err)
			return 1
		}
	}
	s, err := store.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mailbus-store:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// New connections get renewed certificates (SIGHUP or a change of the
	// files); established ones keep theirs.
	certs.Watch(ctx, grpctls.WatchOptions{Logger: log})
	if err := s.Run(ctx); err != nil {
		log.Error("store failed", "err", err)
		return 1
	}
	return 0
}
