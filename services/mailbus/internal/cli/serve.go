package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/events"
	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/pkg/serving"
	"github.com/mailbus/mailbus/services/imapgw/imapgw"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
	"github.com/mailbus/mailbus/services/store/store"
	"github.com/mailbus/mailbus/services/webhooks/webhooks"
)

// serveFlags are the flags of serve (and demo).
type serveFlags struct {
	data, databaseURL, natsURL, natsListen string
	listen, metricsListen, keyFile         string
	imapListen                             string
	oldKeyFiles                            string
	corsOrigins                            []string
	logLevel, logFormat                    string
	exactListSizes                         string
	retention, eventsMaxAge                time.Duration
	eventsReplicas                         int64
	maxMessageSize                         int64
	tls                                    grpctls.Server
	allowPrivateWebhooks                   bool
	webhookRetryWindow                     time.Duration
}

func (a *app) addServeFlags(c *cobra.Command, f *serveFlags, defaultLogLevel string) {
	fl := c.Flags()
	a.stringVar(fl, &f.data, "data", "MAILBUS_DATA", mailbus.DefaultDataDir, "data directory: SQLite database, embedded NATS files, credentials key")
	a.stringVar(fl, &f.databaseURL, "database-url", "MAILBUS_DATABASE_URL", "", "PostgreSQL URL (postgres://...) instead of SQLite in --data")
	a.stringVar(fl, &f.natsURL, "nats", "MAILBUS_NATS", "", "external NATS server URL (with JetStream) instead of the embedded one")
	a.stringVar(fl, &f.natsListen, "nats-listen", "MAILBUS_NATS_LISTEN", "", "let the embedded NATS also listen on this address (such as 127.0.0.1:4222) for backend consumers, each with a NATS user (mailbus nats-user create)")
	a.stringVar(fl, &f.listen, "listen", "MAILBUS_LISTEN", store.DefaultListen, "the store's API address: gRPC, Connect and gRPC-Web (the other commands' --server)")
	a.stringSliceVar(fl, &f.corsOrigins, "cors-origin", "MAILBUS_CORS_ORIGINS", "let browser pages of this origin (https://app.example.com; * for any) call the store's API with Connect or gRPC-Web; repeatable; none by default")
	a.stringVar(fl, &f.metricsListen, "metrics-listen", "MAILBUS_METRICS_LISTEN", store.DefaultMetricsListen, "HTTP address of /metrics and /healthz; - disables")
	a.stringVar(fl, &f.keyFile, "secret-key-file", "MAILBUS_SECRET_KEY_FILE", "", "credentials key file (or MAILBUS_SECRET_KEY); default: --data/secret.key, created on first start")
	a.stringVar(fl, &f.oldKeyFiles, "old-secret-key-file", "MAILBUS_OLD_SECRET_KEY_FILE", "", "comma-separated files of earlier keys, to open credentials not yet rotated (mailbus key rotate)")
	a.durationVar(fl, &f.retention, "change-log-retention", "MAILBUS_CHANGE_LOG_RETENTION", store.DefaultRetention, "how long the change log (changes, watch --since) is kept")
	a.int64Var(fl, &f.eventsReplicas, "events-replicas", "MAILBUS_EVENTS_REPLICAS", 1, "replicas of the events stream (MAILBUS_EVENTS) when it is created: 3 on a 3-node NATS cluster (--nats); an existing stream keeps its own (decision 0030)")
	a.durationVar(fl, &f.eventsMaxAge, "events-max-age", "MAILBUS_EVENTS_MAX_AGE", 0, "age limit of the events stream when it is created (at least 2m); 0: --change-log-retention; an existing stream keeps its own (decision 0030)")
	a.int64Var(fl, &f.maxMessageSize, "max-message-size", "MAILBUS_MAX_MESSAGE_SIZE", store.DefaultMaxMessageSize, "largest message stored, in bytes")
	a.stringVar(fl, &f.exactListSizes, "exact-list-sizes", "MAILBUS_POP3_EXACT_LIST_SIZES", "", "comma-separated POP3 hosts known to report exact LIST sizes (Dovecot does), or *: a message without a final line break is stored without the CRLF the server appends")
	a.boolVar(fl, &f.allowPrivateWebhooks, "allow-private-webhooks", "MAILBUS_ALLOW_PRIVATE_WEBHOOKS", false, "let webhook endpoints be on loopback, private and link-local addresses (development and tests only: whoever may add a webhook could reach the private network)")
	a.durationVar(fl, &f.webhookRetryWindow, "webhook-retry-window", "MAILBUS_WEBHOOK_RETRY_WINDOW", webhooks.DefaultRetryWindow, "how long a failing webhook delivery is retried before it is dead-lettered")
	a.stringVar(fl, &f.logLevel, "log-level", "MAILBUS_LOG_LEVEL", defaultLogLevel, "debug, info, warn or error")
	a.stringVar(fl, &f.logFormat, "log-format", "MAILBUS_LOG_FORMAT", "text", "text or json")
}

// addServeTLSFlags adds the flags of the store's transport security.
func (a *app) addServeTLSFlags(c *cobra.Command, f *serveFlags) {
	fl := c.Flags()
	a.stringVar(fl, &f.tls.CertFile, "tls-cert", "MAILBUS_TLS_CERT", "", "TLS certificate (PEM) of the store's gRPC; with --tls-key turns TLS on")
	a.stringVar(fl, &f.tls.KeyFile, "tls-key", "MAILBUS_TLS_KEY", "", "private key (PEM) of --tls-cert")
	a.stringVar(fl, &f.tls.ClientCAFile, "tls-client-ca", "MAILBUS_TLS_CLIENT_CA", "", "require gRPC clients to present a certificate signed by this CA (mutual TLS)")
	a.boolVar(fl, &f.tls.Insecure, "insecure", "MAILBUS_INSECURE", false, "allow plaintext gRPC and metrics on a non-loopback --listen or --metrics-listen address, and the embedded NATS (no TLS) on a non-loopback --nats-listen (private networks only; logged as a warning)")
}

// serverConfig turns the flags into the server's configuration.
func (a *app) serverConfig(f *serveFlags) (mailbus.Config, error) {
	log, err := envflag.Logger(f.logLevel, f.logFormat)
	if err != nil {
		return mailbus.Config{}, usagef("%v", err)
	}
	if f.natsURL != "" && f.natsListen != "" {
		return mailbus.Config{}, usagef("--nats-listen is for the embedded NATS server; with --nats the external server serves consumers")
	}
	if f.databaseURL != "" && !strings.HasPrefix(f.databaseURL, "postgres://") && !strings.HasPrefix(f.databaseURL, "postgresql://") {
		return mailbus.Config{}, usagef("--database-url %q: want postgres://user@host/db", envflag.Redact(f.databaseURL))
	}
	cfg := mailbus.Config{
		DataDir: f.data, DatabaseURL: f.databaseURL, NATSURL: f.natsURL, NATSListen: f.natsListen,
		Listen: f.listen, MetricsListen: f.metricsListen, SecretKeyFile: f.keyFile, Logger: log, IMAPListen: f.imapListen,
		Retention: f.retention, MaxMessageSize: f.maxMessageSize, CORSOrigins: f.corsOrigins,
		EventsReplicas: int(f.eventsReplicas), EventsMaxAge: f.eventsMaxAge,
		AllowPrivateWebhooks: f.allowPrivateWebhooks, WebhookRetryWindow: f.webhookRetryWindow,
	}
	if f.webhookRetryWindow < 0 {
		return mailbus.Config{}, usagef("--webhook-retry-window %s: want more than 0", f.webhookRetryWindow)
	}
	if err := serving.CheckOrigins(f.corsOrigins); err != nil {
		return mailbus.Config{}, usagef("--cors-origin: %v", err)
	}
	for _, h := range strings.Split(f.exactListSizes, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cfg.ExactListSizes = append(cfg.ExactListSizes, h)
		}
	}
	certs, err := f.tls.Load()
	if err != nil {
		return mailbus.Config{}, usagef("%v", err)
	}
	cfg.TLSCerts, cfg.Insecure = certs, f.tls.Insecure
	if f.retention <= 0 {
		return mailbus.Config{}, usagef("--change-log-retention %s: want more than 0", f.retention)
	}
	if f.eventsReplicas < 1 || f.eventsReplicas > 5 {
		return mailbus.Config{}, usagef("--events-replicas %d: JetStream allows 1 to 5", f.eventsReplicas)
	}
	if f.eventsReplicas > 1 && f.natsURL == "" {
		return mailbus.Config{}, usagef("--events-replicas %d: the embedded NATS server is one node; give --nats with a NATS cluster for more than one replica", f.eventsReplicas)
	}
	if f.eventsMaxAge != 0 && f.eventsMaxAge < events.DefaultDuplicates {
		return mailbus.Config{}, usagef("--events-max-age %s: give 0 (--change-log-retention) or at least %s, the stream's de-duplication window", f.eventsMaxAge, events.DefaultDuplicates)
	}
	if f.maxMessageSize < 1024 {
		return mailbus.Config{}, usagef("--max-message-size %d: want at least 1024", f.maxMessageSize)
	}
	if cfg.OldSecretKeys, err = secretbox.LoadKeyFiles(f.oldKeyFiles); err != nil {
		return mailbus.Config{}, usagef("--old-secret-key-file: %v", err)
	}
	if f.keyFile == "" {
		if v, ok := a.env("MAILBUS_SECRET_KEY"); ok && v != "" {
			k, err := secretbox.ParseKey(v)
			if err != nil {
				return mailbus.Config{}, usagef("MAILBUS_SECRET_KEY: %v", err)
			}
			cfg.SecretKey = k
		}
	}
	return cfg, nil
}

func (a *app) serveCommand() *cobra.Command {
	var f serveFlags
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the store, imapsync, pop3fetcher, webhooks and the IMAP gateway in one process (embedded NATS and SQLite)",
		Long: `Run mailbus in one process: the store, the IMAP sync, the POP3 fetcher and
the webhooks services, on an embedded NATS server with JetStream and an
SQLite database in --data. Nothing else needs to be installed or running.
On first start the credentials key (which encrypts the stored passwords) is
created in the data directory with mode 0600; keep it with the data.

--nats and --database-url switch to an external NATS server and PostgreSQL;
--nats-listen lets backend systems subscribe to the embedded NATS server,
each as a NATS user that reads one account's events or every account's
(mailbus nats-user create; applied while serve runs, no restart).
Webhooks (mailbus webhook add) are served on the store's address; an
endpoint on a loopback or private address needs --allow-private-webhooks.
The IMAP gateway (--imap-listen) serves every account to mail clients: the
user name is the account's name, the password a device token of it
(mailbus token create --account NAME).
SIGINT or SIGTERM stops everything gracefully.`,
		Example: `  mailbus serve
  mailbus serve --data /var/lib/mailbus --nats-listen 127.0.0.1:4222
  mailbus serve --listen 0.0.0.0:7400 --tls-cert store.pem --tls-key store-key.pem
  mailbus serve --database-url postgres://mailbus@db/mailbus --nats nats://nats:4222 \
      --secret-key-file /etc/mailbus/secret.key`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			cfg, err := a.serverConfig(&f)
			if err != nil {
				return err
			}
			cfg.Ready = func(info mailbus.Info) { printServeBanner(a.io.Out, info) }
			srv, err := mailbus.New(cfg)
			if err != nil {
				return err
			}
			return srv.Run(ctx)
		}),
	}
	a.addServeFlags(c, &f, "info")
	a.addServeTLSFlags(c, &f)
	a.stringVar(c.Flags(), &f.imapListen, "imap-listen", "MAILBUS_IMAP_LISTEN", imapgw.DefaultListen, "the IMAP gateway's address, for mail clients (user: an account's name, password: a device token); STARTTLS with --tls-cert; - turns it off")
	return c
}

func printServeBanner(w io.Writer, info mailbus.Info) {
	fmt.Fprintln(w, "mailbus is running (Ctrl-C stops it).")
	fmt.Fprintf(w, "  store (gRPC):  %s   (the client commands' --server)\n", info.StoreAddr)
	fmt.Fprintf(w, "  web console:   %s   (sign in with an API token)\n", info.ConsoleURL)
	fmt.Fprintf(w, "  database:      %s\n", info.Database)
	if info.NATSURL != "" {
		fmt.Fprintf(w, "  NATS:          %s   (events: mailbus.events.<account>.<kind>, stream MAILBUS_EVENTS)\n", info.NATSURL)
	} else {
		fmt.Fprintln(w, "  NATS:          embedded, in-process only (--nats-listen 127.0.0.1:4222 lets consumers subscribe)")
	}
	if info.IMAPAddr != "" {
		fmt.Fprintf(w, "  IMAP gateway:  %s   (%s; user: an account's name, password: a device token)\n", info.IMAPAddr, imapSecurity(info))
	}
	if info.MetricsAddr != "" && info.MetricsAddr != "-" {
		fmt.Fprintf(w, "  metrics:       http://%s/metrics\n", info.MetricsAddr)
	}
	switch {
	case info.KeyCreated:
		fmt.Fprintf(w, "  key:           %s (created now; keep it with the data: it decrypts the stored passwords)\n", info.KeyFile)
	case info.KeyFile != "":
		fmt.Fprintf(w, "  key:           %s\n", info.KeyFile)
	}
	webhooksNote := "an endpoint on a private address needs --allow-private-webhooks"
	if info.AllowPrivateWebhooks {
		webhooksNote = "private addresses allowed: development only"
	}
	fmt.Fprintf(w, "  webhooks:      on the store's address (mailbus webhook add --help; %s)\n", webhooksNote)
	if info.AdminTokenFile != "" {
		fmt.Fprintf(w, "  admin token:   %s   (the client commands read %s, or --token-file, --token, MAILBUS_TOKEN)\n", info.AdminTokenFile, defaultTokenFile)
	}
	fmt.Fprintf(w, "Add an account: mailbus account add --server %s --help\n", info.StoreAddr)
}

// imapSecurity names the security a mail client sets for the gateway.
func imapSecurity(info mailbus.Info) string {
	if info.IMAPTLS {
		return "STARTTLS"
	}
	return "no encryption: loopback only"
}
