package cli

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// serveConfigOf parses serve's flags from args and env as serve does and
// returns the server's configuration.
func serveConfigOf(t *testing.T, args []string, env map[string]string) (mailbus.Config, error) {
	t.Helper()
	a := &app{io: IO{Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }}}
	var f serveFlags
	cmd := &cobra.Command{Use: "serve"}
	a.addServeFlags(cmd, &f, "info")
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return a.serverConfig(&f)
}

// serve (and demo) take --exact-list-sizes (or its environment variable)
// as a comma-separated list of POP3 hosts.
func TestServeExactListSizes(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"default", nil, nil, nil},
		{"flag", []string{"--exact-list-sizes", "pop.example.org, mail.example.net"}, nil, []string{"pop.example.org", "mail.example.net"}},
		{"every server", []string{"--exact-list-sizes=*"}, nil, []string{"*"}},
		{"environment", nil, map[string]string{"MAILBUS_POP3_EXACT_LIST_SIZES": "pop.example.org"}, []string{"pop.example.org"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := serveConfigOf(t, c.args, c.env)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.ExactListSizes, c.want) {
				t.Errorf("ExactListSizes %q, want %q", cfg.ExactListSizes, c.want)
			}
		})
	}
}

// serve (and demo) take --cors-origin repeated or comma-separated, or
// MAILBUS_CORS_ORIGINS, and refuse what is not an origin.
func TestServeCORSOrigins(t *testing.T) {
	for _, c := range []struct {
		name    string
		args    []string
		env     map[string]string
		want    []string
		wantErr bool
	}{
		{"default: none", nil, nil, nil, false},
		{"repeated", []string{"--cors-origin", "https://app.example.com", "--cors-origin=http://localhost:5173"}, nil, []string{"https://app.example.com", "http://localhost:5173"}, false},
		{"comma-separated", []string{"--cors-origin", "https://a.example,https://b.example"}, nil, []string{"https://a.example", "https://b.example"}, false},
		{"environment", nil, map[string]string{"MAILBUS_CORS_ORIGINS": "https://a.example, https://b.example"}, []string{"https://a.example", "https://b.example"}, false},
		{"flag beats environment", []string{"--cors-origin", "*"}, map[string]string{"MAILBUS_CORS_ORIGINS": "https://a.example"}, []string{"*"}, false},
		{"a path is not an origin", []string{"--cors-origin", "https://app.example.com/console"}, nil, nil, true},
		{"a host alone is not an origin", []string{"--cors-origin", "app.example.com"}, nil, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := serveConfigOf(t, c.args, c.env)
			if c.wantErr {
				if err == nil {
					t.Fatalf("CORS origins %q accepted", c.args)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(cfg.CORSOrigins, c.want) {
				t.Errorf("CORSOrigins %q, want %q", cfg.CORSOrigins, c.want)
			}
		})
	}
}

// serve (and demo) take --events-replicas and --events-max-age (or their
// environment variables) for the events stream they create, and refuse
// what JetStream or the embedded server cannot do.
func TestServeEventsStream(t *testing.T) {
	for _, c := range []struct {
		name         string
		args         []string
		env          map[string]string
		wantReplicas int
		wantMaxAge   time.Duration
		wantErr      string
	}{
		{"default", nil, nil, 1, 0, ""},
		{"max age", []string{"--events-max-age", "720h"}, nil, 1, 720 * time.Hour, ""},
		{"environment", nil, map[string]string{"MAILBUS_EVENTS_MAX_AGE": "48h", "MAILBUS_EVENTS_REPLICAS": "3", "MAILBUS_NATS": "nats://10.0.0.1:4222"}, 3, 48 * time.Hour, ""},
		{"replicas on a cluster", []string{"--nats", "nats://10.0.0.1:4222", "--events-replicas", "3"}, nil, 3, 0, ""},
		{"replicas on the embedded server", []string{"--events-replicas", "3"}, nil, 0, 0, "--events-replicas 3: the embedded NATS server is one node"},
		{"too many replicas", []string{"--nats", "nats://10.0.0.1:4222", "--events-replicas", "6"}, nil, 0, 0, "--events-replicas 6: JetStream allows 1 to 5"},
		{"no replicas", []string{"--events-replicas", "0"}, nil, 0, 0, "--events-replicas 0: JetStream allows 1 to 5"},
		{"shorter than the duplicate window", []string{"--events-max-age", "1m"}, nil, 0, 0, "--events-max-age 1m0s: give 0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := serveConfigOf(t, c.args, c.env)
			if c.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), c.wantErr) {
					t.Fatalf("error %v, want %q", err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.EventsReplicas != c.wantReplicas || cfg.EventsMaxAge != c.wantMaxAge {
				t.Errorf("events stream: %d replicas, max age %v; want %d and %v", cfg.EventsReplicas, cfg.EventsMaxAge, c.wantReplicas, c.wantMaxAge)
			}
		})
	}
}
