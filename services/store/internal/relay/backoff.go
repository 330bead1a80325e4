package relay

import (
	"math/rand/v2"
	"time"
)

// Retry delays after a failed pass.
//
// backoffMin is the first delay: long enough for a JetStream stream leader
// election or a client reconnect to another server to finish, short enough
// that a blip adds little latency to the events behind it.
//
// Each further failure in a row doubles the delay (backoffFactor) up to
// backoffMax. At the cap, a relay facing a NATS or database outage makes one
// attempt every 5 to 10 seconds, which costs nothing worth saving, and it
// resumes within that time once the outage ends; a NATS reconnect wakes it
// at once anyway.
//
// Jitter: the delay is drawn uniformly from [d/2, d] ("equal jitter"), so
// that replicas and services that failed together do not retry in lockstep,
// while the delay never drops below half the nominal one.
const (
	backoffMin    = 100 * time.Millisecond
	backoffMax    = 10 * time.Second
	backoffFactor = 2
)

// backoff computes the delays of consecutive failures. The zero value is
// ready to use.
type backoff struct {
	next time.Duration
}

// delay returns how long to wait after one more failure.
func (b *backoff) delay() time.Duration {
	d := b.next
	if d < backoffMin {
		d = backoffMin
	}
	b.next = min(d*backoffFactor, backoffMax)
	return d/2 + rand.N(d/2+1)
}

// reset starts again at backoffMin, after a success.
func (b *backoff) reset() { b.next = 0 }
