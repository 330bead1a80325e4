package store_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
	"github.com/mailbus/mailbus/services/store/store"
)

// startNATSCluster starts three embedded NATS servers with JetStream,
// clustered by routes on loopback, as the compose file runs them, and
// returns the URL of all three (comma-separated, as --nats takes it).
func startNATSCluster(t *testing.T) string {
	t.Helper()
	ports := make([]int, 3)
	for i := range ports {
		ports[i] = freePort(t)
	}
	routes := server.RoutesFromStr(fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d,nats://127.0.0.1:%d", ports[0], ports[1], ports[2]))
	var servers []*server.Server
	for i, p := range ports {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1,
			JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true,
			Cluster: server.ClusterOpts{Name: "mailbus", Host: "127.0.0.1", Port: p},
			Routes:  routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers = append(servers, s)
	}
	var urls []string
	for _, s := range servers {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatal("nats-server not ready")
		}
		urls = append(urls, s.ClientURL())
	}
	return strings.Join(urls, ",")
}

// logBuffer keeps what a store logs, for a test to look for a line.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestOperatorOwnsTheStream runs the store on a 3-node NATS cluster: it
// creates MAILBUS_EVENTS with --events-replicas 3 and the change-log
// retention as its age limit. An operator then sets another max age
// through the JetStream API; the store, restarted with other flags
// (--events-replicas 1 --events-max-age 1h), keeps the stream R3 with the
// operator's age, warns about both differences, and publishes on.
func TestOperatorOwnsTheStream(t *testing.T) {
	natsURL := startNATSCluster(t)
	sqlite := dbtest.Backends()[0]
	dbCfg := sqlite.Config(t)
	const retention = 48 * time.Hour
	start := func(replicas int, maxAge time.Duration) (*env, *logBuffer) {
		logs := &logBuffer{}
		logger := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), nil))
		e := startStore(t, sqlite, storeOpts{natsURL: natsURL, dbConfig: &dbCfg, retention: retention,
			eventsReplicas: replicas, eventsMaxAge: maxAge, logger: logger})
		return e, logs
	}
	streamConfig := func(e *env) (jetstream.StreamConfig, int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), rpcLong)
		defer cancel()
		s, err := e.js.Stream(ctx, events.StreamName)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		peers := 0
		if info.Cluster != nil {
			peers = len(info.Cluster.Replicas) + 1
		}
		return info.Config, peers
	}

	first, _ := start(3, 0)
	first.createAccount(t, pop3Account("before-restart"))
	first.waitPublished(t)
	cfg, peers := streamConfig(first)
	if cfg.Replicas != 3 || peers != 3 || cfg.MaxAge != retention {
		t.Fatalf("created stream: %d replicas (%d peers), max age %v; want 3 (3), %v", cfg.Replicas, peers, cfg.MaxAge, retention)
	}

	// The operator's `nats stream edit --max-age 720h`.
	cfg.MaxAge = 720 * time.Hour
	ctx, cancel := context.WithTimeout(context.Background(), rpcLong)
	defer cancel()
	if _, err := first.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("operator's update: %v", err)
	}
	first.stop()

	second, logs := start(1, time.Hour)
	second.createAccount(t, pop3Account("after-restart"))
	second.waitPublished(t)
	cfg, peers = streamConfig(second)
	if cfg.Replicas != 3 || peers != 3 || cfg.MaxAge != 720*time.Hour {
		t.Errorf("stream after the restart: %d replicas (%d peers), max age %v; want 3 (3), 720h (the operator's)", cfg.Replicas, peers, cfg.MaxAge)
	}
	if got := readStream(t, second.js, events.StreamName, events.AllSubjects); len(got) != 2 {
		t.Errorf("stream holds %d events, want 2 (one per account)", len(got))
	} else {
		checkEnvelope(t, got)
	}
	for _, want := range []string{
		"replicas: the stream has 3, the flags say 1",
		"max age: the stream has 720h0m0s, the flags say 1h0m0s",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the restarted store logged no warning %q", want)
		}
	}
}

// TestEventsStream: the stream the store creates, from its flags.
func TestEventsStream(t *testing.T) {
	for _, tc := range []struct {
		name              string
		replicas          int
		maxAge, retention time.Duration
		wantReplicas      int
		wantMaxAge        time.Duration
	}{
		{"defaults", 0, 0, 0, 1, store.DefaultRetention},
		{"max age from the retention", 3, 0, 36 * time.Hour, 3, 36 * time.Hour},
		{"max age given", 3, 720 * time.Hour, 36 * time.Hour, 3, 720 * time.Hour},
		{"no shorter than the duplicates window", 1, 0, time.Nanosecond, 1, events.DefaultDuplicates},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := store.EventsStream(tc.replicas, tc.maxAge, tc.retention)
			if c.Name != events.StreamName || c.Replicas != tc.wantReplicas || c.MaxAge != tc.wantMaxAge {
				t.Errorf("EventsStream = %s, %d replicas, max age %v; want %s, %d, %v", c.Name, c.Replicas, c.MaxAge, events.StreamName, tc.wantReplicas, tc.wantMaxAge)
			}
		})
	}
	for _, bad := range []store.Config{{EventsMaxAge: time.Second}, {EventsMaxAge: -time.Hour}, {EventsReplicas: 6}, {EventsReplicas: -1}} {
		bad.Dev, bad.DataDir, bad.MetricsListen = true, t.TempDir(), "-"
		if _, err := store.New(bad); err == nil {
			t.Errorf("store.New accepted --events-max-age %v --events-replicas %d", bad.EventsMaxAge, bad.EventsReplicas)
		}
	}
}
