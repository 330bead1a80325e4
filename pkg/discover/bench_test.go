package discover_test

import (
	"context"
	"testing"

	"github.com/mailbus/mailbus/pkg/discover"
	"github.com/mailbus/mailbus/pkg/discovertest"
)

// BenchmarkPreset: a preset answer, no network.
func BenchmarkPreset(b *testing.B) {
	for b.Loop() {
		if _, err := discover.Preset("alice@gmail.com", discover.IMAP); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFallThroughToMX: the longest search, every source asked on
// loopback (two autoconfig 404s over HTTPS, two SRV misses, the MX).
func BenchmarkFallThroughToMX(b *testing.B) {
	env := discovertest.Start(b)
	env.AddRecord(b, "example.test. 60 IN MX 10 mx.example.test.")
	d := discover.New(env.Config())
	ctx := context.Background()
	for b.Loop() {
		r, err := d.Discover(ctx, "alice@example.test", discover.IMAP)
		if err != nil || r.Source != discover.SourceMX {
			b.Fatal(r, err)
		}
	}
}
