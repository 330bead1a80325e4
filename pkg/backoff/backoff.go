// Package backoff computes retry delays: exponential growth from Min to Max
// with "equal jitter" (a delay d is drawn uniformly from [d/2, d]), so that
// many workers failing together do not retry together, while each still
// waits at least half its nominal delay.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the state of one retrying worker. The zero value is not
// usable; set Min and Max. Not safe for concurrent use.
type Backoff struct {
	// Min is the first nominal delay.
	Min time.Duration
	// Max caps the nominal delay.
	Max  time.Duration
	next time.Duration
}

// Next returns the delay before the next attempt and doubles the nominal
// delay for the one after.
func (b *Backoff) Next() time.Duration {
	if b.next < b.Min {
		b.next = b.Min
	}
	d := b.next
	if b.next < b.Max {
		b.next *= 2
		if b.next > b.Max {
			b.next = b.Max
		}
	}
	return Jitter(d)
}

// Reset starts again from Min, after a success.
func (b *Backoff) Reset() { b.next = 0 }

// Jitter returns a duration drawn uniformly from [d/2, d].
func Jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	half := d / 2
	return half + time.Duration(rand.Int64N(int64(d-half)+1))
}

// Sleep waits for d or until ctx ends; it reports whether the full delay
// passed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
