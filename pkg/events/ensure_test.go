package events

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startJetStream starts an embedded NATS server with JetStream and connects
// to it; both end with the test.
func startJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		JetStream: true, StoreDir: t.TempDir(), Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
	})
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestEnsureStream creates a missing stream as configured; on an existing
// one it keeps every setting an operator made, even where the config asks
// for another, adds a subject the stream lacks, and reports the
// differences through StreamDrift.
func TestEnsureStream(t *testing.T) {
	js := startJetStream(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cfg := StreamConfig(1, time.Hour, time.Minute)
	s, err := EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	info := s.CachedInfo()
	if info.Config.MaxAge != time.Hour || info.Config.Duplicates != time.Minute || info.Config.Storage != jetstream.FileStorage ||
		!slices.Equal(info.Config.Subjects, []string{AllSubjects}) {
		t.Fatalf("created config = %+v", info.Config)
	}
	if d := StreamDrift(info.Config, cfg); len(d) != 0 {
		t.Errorf("drift of the stream just created: %q", d)
	}

	// The operator sets an age and a byte limit and narrows the subjects;
	// the flags then ask for another age and a memory stream.
	op := info.Config
	op.MaxAge = 720 * time.Hour
	op.MaxBytes = 1 << 30
	op.Subjects = []string{SubjectPrefix + ".a.>"}
	if _, err := js.UpdateStream(ctx, op); err != nil {
		t.Fatalf("operator update: %v", err)
	}
	cfg.MaxAge = 2 * time.Hour
	cfg.Storage = jetstream.MemoryStorage
	if s, err = EnsureStream(ctx, js, cfg); err != nil {
		t.Fatalf("ensure on the operator's stream: %v", err)
	}
	info, err = s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 720*time.Hour || info.Config.MaxBytes != 1<<30 || info.Config.Storage != jetstream.FileStorage {
		t.Errorf("operator's settings not kept: MaxAge %v MaxBytes %d Storage %v", info.Config.MaxAge, info.Config.MaxBytes, info.Config.Storage)
	}
	if want := []string{AllSubjects}; !slices.Equal(info.Config.Subjects, want) {
		t.Errorf("subjects %q, want %q (the missing one added, covering the narrower one)", info.Config.Subjects, want)
	}
	drift := strings.Join(StreamDrift(info.Config, cfg), "\n")
	for _, want := range []string{"max age: the stream has 720h0m0s, the flags say 2h0m0s", "storage: the stream has File, the flags say Memory"} {
		if !strings.Contains(drift, want) {
			t.Errorf("drift %q lacks %q", drift, want)
		}
	}
	if strings.Count(drift, "\n") != 1 {
		t.Errorf("drift has other lines than age and storage: %q", drift)
	}

	// A subject of the operator's beside the contract's stays.
	op = info.Config
	op.Subjects = []string{"audit.>"}
	if _, err := js.UpdateStream(ctx, op); err != nil {
		t.Fatalf("operator update: %v", err)
	}
	if s, err = EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if got, want := s.CachedInfo().Config.Subjects, []string{"audit.>", AllSubjects}; !slices.Equal(got, want) {
		t.Errorf("subjects %q, want %q", got, want)
	}

	// A stream whose subjects already cover the contract's is left as it is.
	op = info.Config
	op.Subjects = []string{"mailbus.>"}
	if _, err := js.UpdateStream(ctx, op); err != nil {
		t.Fatalf("operator update: %v", err)
	}
	if s, err = EnsureStream(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config.Subjects; !slices.Equal(got, []string{"mailbus.>"}) {
		t.Errorf("subjects %q, want only mailbus.>", got)
	}
}

func TestMissingSubjects(t *testing.T) {
	for _, tc := range []struct {
		have, want, missing []string
	}{
		{nil, []string{AllSubjects}, []string{AllSubjects}},
		{[]string{AllSubjects}, []string{AllSubjects}, nil},
		{[]string{"mailbus.>"}, []string{AllSubjects}, nil},
		{[]string{">"}, []string{AllSubjects}, nil},
		{[]string{"mailbus.*.>"}, []string{AllSubjects}, nil},
		{[]string{"mailbus.events.a.>"}, []string{AllSubjects}, []string{AllSubjects}},
		{[]string{"mailbus.events"}, []string{AllSubjects}, []string{AllSubjects}},
		{[]string{"mailbus.events.*"}, []string{AllSubjects}, []string{AllSubjects}},
		{[]string{"mailbus.events.*"}, []string{"mailbus.events.x"}, nil},
		{[]string{"mailbus.events.>"}, []string{"mailbus.events"}, []string{"mailbus.events"}},
		{[]string{"other.>"}, []string{"a.b", "other.c"}, []string{"a.b"}},
	} {
		if got := MissingSubjects(tc.have, tc.want); !slices.Equal(got, tc.missing) {
			t.Errorf("MissingSubjects(%q, %q) = %q, want %q", tc.have, tc.want, got, tc.missing)
		}
	}
}

func TestStreamDrift(t *testing.T) {
	base := StreamConfig(3, time.Hour, 0)
	for _, tc := range []struct {
		name   string
		change func(*jetstream.StreamConfig)
		want   string
	}{
		{"same", func(*jetstream.StreamConfig) {}, ""},
		{"replicas", func(c *jetstream.StreamConfig) { c.Replicas = 1 }, "replicas: the stream has 1, the flags say 3"},
		{"no age limit", func(c *jetstream.StreamConfig) { c.MaxAge = 0 }, "max age: the stream has no age limit, the flags say 1h0m0s"},
		{"retention", func(c *jetstream.StreamConfig) { c.Retention = jetstream.InterestPolicy }, "retention: the stream has Interest, the flags say Limits"},
		{"discard", func(c *jetstream.StreamConfig) { c.Discard = jetstream.DiscardNew }, "discard: the stream has DiscardNew, the flags say DiscardOld"},
		{"duplicates", func(c *jetstream.StreamConfig) { c.Duplicates = time.Minute }, "duplicates window: the stream has 1m0s, the flags say 2m0s"},
		{"byte limit is the operator's alone", func(c *jetstream.StreamConfig) { c.MaxBytes = 1 << 30 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			have := base
			tc.change(&have)
			if got := strings.Join(StreamDrift(have, base), "\n"); got != tc.want {
				t.Errorf("drift = %q, want %q", got, tc.want)
			}
		})
	}
}
