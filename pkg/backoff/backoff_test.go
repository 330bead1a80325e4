package backoff

import (
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	b := &Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	nominal := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, n := range nominal {
		n *= time.Millisecond
		d := b.Next()
		if d < n/2 || d > n {
			t.Fatalf("attempt %d: %v outside [%v, %v]", i, d, n/2, n)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Fatalf("after reset: %v", d)
	}
}

func TestJitterSpreads(t *testing.T) {
	seen := map[time.Duration]bool{}
	for i := 0; i < 100; i++ {
		seen[Jitter(time.Second)] = true
	}
	if len(seen) < 50 {
		t.Fatalf("only %d distinct delays in 100 draws", len(seen))
	}
}
