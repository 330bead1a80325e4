package events

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
)

// machineNATS is the NATS server with JetStream that the development and CI
// machines run. Without it the test is skipped, except in CI, where it must
// be there.
const machineNATS = "nats://127.0.0.1:4222"

func connectMachineNATS(t *testing.T) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(machineNATS, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("NATS at %s: %v", machineNATS, err)
		}
		t.Skipf("NATS at %s not reachable: %v", machineNATS, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestEnsureStream creates a stream, leaves an operator's limit alone while
// reconciling the contract's fields, and changes nothing when nothing
// differs. It runs on a stream and subjects of its own, so that it never
// touches a real MAILBUS_EVENTS.
func TestEnsureStream(t *testing.T) {
	js := connectMachineNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	id := nuid.Next()
	cfg := StreamConfig(1, time.Hour, time.Minute)
	cfg.Name = "EVENTS_TEST_" + id
	cfg.Subjects = []string{"eventstest." + id + ".>"}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := js.DeleteStream(ctx, cfg.Name); err != nil {
			t.Logf("delete stream %s: %v", cfg.Name, err)
		}
	})

	s, err := EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	info := s.CachedInfo()
	if info.Config.MaxAge != time.Hour || info.Config.Duplicates != time.Minute || info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("created config = %+v", info.Config)
	}

	// An operator sets a byte limit; the contract moves the age limit.
	opCfg := info.Config
	opCfg.MaxBytes = 1 << 30
	if _, err := js.UpdateStream(ctx, opCfg); err != nil {
		t.Fatalf("operator update: %v", err)
	}
	cfg.MaxAge = 2 * time.Hour
	s, err = EnsureStream(ctx, js, cfg)
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	info, err = s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge != 2*time.Hour || info.Config.MaxBytes != 1<<30 {
		t.Fatalf("reconciled config: MaxAge %v MaxBytes %d", info.Config.MaxAge, info.Config.MaxBytes)
	}

	// Nothing differs: no update, the stream is returned as it is.
	if _, err := EnsureStream(ctx, js, cfg); err != nil {
		t.Fatalf("ensure again: %v", err)
	}

	// A change JetStream cannot make fails with the server's error.
	bad := cfg
	bad.Storage = jetstream.MemoryStorage
	if _, err := EnsureStream(ctx, js, bad); err == nil {
		t.Fatal("changing the storage type succeeded")
	}
}
