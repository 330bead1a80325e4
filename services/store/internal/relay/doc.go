// Package relay publishes the store's transactional outbox to JetStream.
//
// The store writes every event into an outbox table in the same database
// transaction as the change it announces, so an event exists if and only if
// its change was committed. The relay reads the outbox in seq order (through
// [Outbox], implemented by the store's database layer), publishes each event
// to the stream on its subject with the event id as Nats-Msg-Id, and marks it
// published once JetStream has acknowledged it. The store calls
// [Relay.Kick] after each commit; PollInterval is the fallback.
//
// # Delivery
//
// At least once, and exactly once in the stream: an event is marked
// published only after its acknowledgement, so a crash, a lost connection or
// a failed MarkPublished leads to publishing it again; the stream drops such
// a repeat as a duplicate of its Nats-Msg-Id as long as it arrives within the
// stream's Duplicates window (events.DefaultDuplicates, 2 minutes, unless
// configured). An event republished later than that, for instance after the
// database refused MarkPublished for longer than the window, is stored twice;
// consumers that must not see a repeat skip an event id or a state they have
// already seen.
//
// # What is retried
//
// Everything, forever, until the context ends: reading the outbox, ensuring
// the stream, publishing (connection down or closed, no responders, ack
// timeout, a rejection by the server) and marking published. After a failure
// the relay backs off with jitter (see backoffMin and backoffMax) and wakes up
// early when the NATS connection reconnects; the next pass starts again from
// the lowest unpublished seq. The only events not retried are those that can
// never be published (no event id, or a subject that is not a valid publish
// subject): they are logged at error level, counted as dropped and marked
// published, so that one bad row cannot hold up every account. The database
// still has their change; devices and consumers recover it through
// GetChanges.
//
// # Order
//
// Events are stored in the stream in outbox seq order, so per account in
// state order (the Outbox must give one account's events seqs in state
// order). Publishing is pipelined: a batch is sent without waiting for each
// acknowledgement, and pipelining alone could break the order. If an earlier
// publish of a batch is rejected or lost while a later one is accepted, the
// later event is stored first and the retry of the earlier one lands after
// it. That happens when a stream has no leader for a moment (a "no
// responders" answer for one message, or the client's own delayed retry of
// it), when JetStream refuses one message, or when the connection drops
// after one message was written to the old socket while the next was kept in
// the reconnect buffer and sent on the new connection.
//
// The relay rules this out on the server: every event of a batch but the
// first is published with Nats-Expected-Last-Msg-Id set to the id of the
// event before it, so JetStream stores event k only when the last message in
// the stream is event k-1, and rejects it otherwise. The first event of a
// batch carries no expectation, and needs none: every lower seq is already
// marked published, hence acknowledged, hence stored. After a failure the
// relay marks published only the contiguous acknowledged prefix of the
// batch and starts the next batch at the first event that was not
// acknowledged; later events that JetStream did store come back as
// duplicates (JetStream checks Nats-Msg-Id before the expectation), and the
// others were rejected. So order holds across errors, reconnects, server
// restarts, a change of leader among store replicas (both leaders publish
// the same ids in the same order) and even a foreign publisher on the stream
// (which only costs a retry).
//
// # Leadership
//
// Several store replicas that share one database run one relay each; a
// [Leader] lets only one of them publish at a time. Leader nil means always
// leader, for a single process (SQLite). Only the leader reads the outbox,
// ensures the stream and publishes; when its leadership context ends it
// stops at once, without marking what it had in flight (the next leader
// publishes those again, and the stream deduplicates them).
//
// # Metrics
//
// Registered on Config.Metrics: mailbus_relay_events_published_total,
// mailbus_relay_events_duplicate_total (republished events JetStream did
// not store again), mailbus_relay_events_dropped_total,
// mailbus_relay_publish_errors_total (failed passes),
// mailbus_relay_outbox_lag (unpublished events seen by the last pass, at
// most BatchSize) and mailbus_relay_leader (1 while leading).
package relay
