// Package events is the event contract shared by every mailbus service: the
// JetStream stream, the subject of each event, and its wire encoding.
//
// Every committed change in the store becomes one protobuf
// [mailbusv1.Event]. The store's outbox relay publishes it to the stream
// [StreamName] on the subject
//
//	mailbus.events.<account_id>.<kind>
//
// where kind is one of the Kind* constants, chosen by the event's oneof
// payload (see [Kind]). A consumer interested in one account subscribes to
// [AccountSubjects]; one interested in one kind of every account to
// "mailbus.events.*.<kind>".
//
// Delivery contract: the relay publishes at least once, with the event id as
// Nats-Msg-Id; the stream removes duplicates that arrive within its
// Duplicates window ([DefaultDuplicates] unless configured), so each event is
// stored exactly once in the stream as long as a retry comes within that
// window. Per account, events are stored in the order of their state. NATS is
// a signal: the store's database stays the source of truth, and a consumer
// that misses events catches up through the store's GetChanges.
//
// This package neither logs nor keeps global state; every function returns
// its errors, wrapped with the prefix "events:".
package events
