package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
)

// publishOnce is one pass: it reads a batch of unpublished events, publishes
// it and marks published the contiguous prefix that JetStream acknowledged.
// n is the number of events marked published (dropped ones included); err
// tells why the pass stopped short, and the next pass starts at the first
// event not marked.
func (r *Relay) publishOnce(ctx context.Context) (n int, err error) {
	batch, err := r.outbox.Unpublished(ctx, r.batchSize)
	if err != nil {
		return 0, fmt.Errorf("relay: read outbox: %w", err)
	}
	r.m.lag.Set(float64(len(batch)))
	if len(batch) == 0 {
		return 0, nil
	}

	// An event that can never be published must not hold up the others.
	if reason := unpublishable(batch[0]); reason != "" {
		return r.drop(ctx, batch[0], reason)
	}
	for i, p := range batch {
		if unpublishable(p) != "" {
			batch = batch[:i] // publish up to it; the next pass drops it
			break
		}
	}

	acked, pubErr := r.publishBatch(ctx, batch)
	if acked > 0 {
		seqs := make([]int64, acked)
		for i := range acked {
			seqs[i] = batch[i].Seq
		}
		if err := r.outbox.MarkPublished(ctx, seqs); err != nil {
			return 0, errors.Join(pubErr, fmt.Errorf("relay: mark published seqs %d..%d: %w", seqs[0], seqs[acked-1], err))
		}
		r.m.published.Add(float64(acked))
		r.log.Debug("relay: published", "events", acked, "first_seq", seqs[0], "last_seq", seqs[acked-1])
	}
	return acked, pubErr
}

// publishBatch publishes batch asynchronously and waits for the acks in
// order. It returns the length of the acknowledged prefix and, when that is
// shorter than the batch, the error of the first event not acknowledged.
// Each event but the first expects the one before it to be the last message
// of the stream (see "Order" in the package doc).
func (r *Relay) publishBatch(ctx context.Context, batch []Pending) (int, error) {
	// Do not fill the reconnect buffer with a batch that would only time
	// out: back off until the reconnect.
	if err := r.connErr(); err != nil {
		return 0, fmt.Errorf("relay: publish seq %d: %w", batch[0].Seq, err)
	}

	futures := make([]jetstream.PubAckFuture, 0, len(batch))
	var sendErr error
	for i, p := range batch {
		opts := []jetstream.PublishOpt{
			jetstream.WithMsgID(p.EventID),
			jetstream.WithExpectStream(r.stream.Name),
		}
		if i > 0 {
			opts = append(opts, jetstream.WithExpectLastMsgID(batch[i-1].EventID))
		}
		// Nats-Msg-Id and the expectations are added by the options.
		msg := &nats.Msg{Subject: p.Subject, Data: p.Payload, Header: events.Header(events.SubjectKind(p.Subject))}
		f, err := r.js.PublishMsgAsync(msg, opts...)
		if err != nil {
			sendErr = err
			break
		}
		futures = append(futures, f)
	}

	timeout := time.NewTimer(r.ackTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		p := batch[i]
		select {
		case ack := <-f.Ok():
			if ack.Duplicate {
				r.m.duplicates.Inc()
			}
		case err := <-f.Err():
			return i, fmt.Errorf("relay: publish seq %d event %s account %s: %w", p.Seq, p.EventID, p.AccountID, err)
		case <-timeout.C:
			return i, fmt.Errorf("relay: publish seq %d event %s: no ack within %v: %w", p.Seq, p.EventID, r.ackTimeout, jetstream.ErrAsyncPublishTimeout)
		case <-ctx.Done():
			return i, fmt.Errorf("relay: publish seq %d: %w", p.Seq, ctx.Err())
		}
	}
	if sendErr != nil {
		p := batch[len(futures)]
		return len(futures), fmt.Errorf("relay: publish seq %d event %s: %w", p.Seq, p.EventID, sendErr)
	}
	return len(futures), nil
}

// drop marks published an event that can never be published.
func (r *Relay) drop(ctx context.Context, p Pending, reason string) (int, error) {
	if err := r.outbox.MarkPublished(ctx, []int64{p.Seq}); err != nil {
		return 0, fmt.Errorf("relay: mark unpublishable seq %d: %w", p.Seq, err)
	}
	r.m.dropped.Inc()
	r.log.Error("relay: dropped unpublishable event", "seq", p.Seq, "event_id", p.EventID,
		"account_id", p.AccountID, "subject", p.Subject, "reason", reason)
	return 1, nil
}

// unpublishable tells why p can never be published, or "" when it can.
func unpublishable(p Pending) string {
	if p.EventID == "" {
		return "no event id"
	}
	if !validPublishSubject(p.Subject) {
		return "invalid subject"
	}
	return ""
}

// validPublishSubject reports whether s is a subject one can publish on:
// non-empty tokens, no wildcards, no white space.
func validPublishSubject(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\r\n\f\v") {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
	}
	return true
}

// connErr returns nats.ErrDisconnected or nats.ErrConnectionClosed when the
// NATS connection is not up, else nil.
func (r *Relay) connErr() error {
	nc := r.js.Conn()
	switch {
	case nc == nil || nc.IsConnected():
		return nil
	case nc.IsClosed():
		return nats.ErrConnectionClosed
	default:
		return nats.ErrDisconnected
	}
}
