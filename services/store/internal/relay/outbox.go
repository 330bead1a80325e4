package relay

import "context"

// Pending is one unpublished event from the outbox.
type Pending struct {
	// Seq orders the outbox. For one account, seqs must increase with the
	// account's state: take the account's lock (or row) before inserting
	// the outbox row in the same transaction.
	Seq int64
	// EventID is the event's id, sent as Nats-Msg-Id for de-duplication.
	EventID string
	// AccountID is the account of the event, for logs.
	AccountID string
	// Subject is the subject to publish on, events.Subject of the event.
	Subject string
	// Payload is the encoded event, events.Marshal of it.
	Payload []byte
}

// Outbox is the store's outbox table, implemented by its database layer.
//
// Seqs may become visible out of order (a transaction that took seq 10 may
// commit after one that took seq 11); the relay then publishes 11 before 10,
// which is harmless as long as the rule on Pending.Seq holds per account.
type Outbox interface {
	// Unpublished returns up to limit unpublished events with the lowest seqs, in seq order.
	Unpublished(ctx context.Context, limit int) ([]Pending, error)
	// MarkPublished marks these events as published.
	MarkPublished(ctx context.Context, seqs []int64) error
}

// Leader ensures that among several store replicas sharing one database only one relay publishes at a time.
type Leader interface {
	// Acquire blocks until this replica leads or ctx ends; the returned context is cancelled when leadership is lost; release gives it up.
	Acquire(ctx context.Context) (leadCtx context.Context, release func(), err error)
}
