package imapgw

import (
	"context"
	"fmt"
	"io"
	"sync/atomic"

	"golang.org/x/sync/semaphore"
)

// literalChunk is the most an APPEND buffer is grown ahead of the bytes
// that arrived: a client announcing a large literal and sending little
// makes the gateway hold little.
const literalChunk = 64 << 10

// appendBudget bounds the bytes of the APPEND literals in flight in the
// whole gateway: each APPEND holds its announced size from before it
// reads the literal until the store has answered.
type appendBudget struct {
	max int64
	sem *semaphore.Weighted
	// inUse and waiting are what is held and how many wait, for tests and
	// logs.
	inUse   atomic.Int64
	waiting atomic.Int64
}

func newAppendBudget(max int64) *appendBudget {
	return &appendBudget{max: max, sem: semaphore.NewWeighted(max)}
}

// acquire waits until n bytes are free or ctx ends; n must be at most
// max (acquire does not wait for what can never be free).
func (b *appendBudget) acquire(ctx context.Context, n int64) error {
	if n > b.max {
		return fmt.Errorf("imapgw: %d bytes exceed the APPEND budget of %d", n, b.max)
	}
	b.waiting.Add(1)
	err := b.sem.Acquire(ctx, n)
	b.waiting.Add(-1)
	if err != nil {
		return fmt.Errorf("imapgw: wait for the APPEND budget: %w", err)
	}
	b.inUse.Add(n)
	return nil
}

func (b *appendBudget) release(n int64) {
	b.inUse.Add(-n)
	b.sem.Release(n)
}

// readLiteral reads the size bytes of r, growing its buffer as they
// arrive (by doubling, at most literalChunk ahead at first, never beyond
// size): an announced size costs nothing until its bytes come.
func readLiteral(r io.Reader, size int64) ([]byte, error) {
	buf := make([]byte, 0, min(size, literalChunk))
	for int64(len(buf)) < size {
		if len(buf) == cap(buf) {
			grown := make([]byte, len(buf), min(size, 2*int64(cap(buf))))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF && int64(len(buf)) < size {
			return nil, io.ErrUnexpectedEOF
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		if err == io.EOF {
			break
		}
	}
	return buf, nil
}
