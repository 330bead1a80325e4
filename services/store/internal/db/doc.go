// Package db is the store's database: accounts, mailboxes, messages, blobs,
// the change log and the transactional outbox, on SQLite (modernc.org/sqlite,
// WAL, the embedded default) or PostgreSQL (pgx), with the same SQL and the
// same tests for both.
//
// Data model:
//   - accounts: one row per upstream account. Its modseq is the account's
//     state: every change of one message or mailbox increases it by one, in
//     the same transaction as the change. The row is updated first in every
//     changing transaction, which locks it on PostgreSQL, so the changes of
//     one account are serialised and states never repeat or go back.
//   - mailboxes, messages: the current view. A message's upstream identity
//     is (mailbox, uidvalidity, uid) for IMAP and uidl for POP3; unique
//     indexes on both make ingest idempotent.
//   - blobs: raw messages, stored once per SHA-256. On PostgreSQL in the
//     database itself, so that several store replicas share them and a
//     message and its bytes commit atomically. On SQLite a body of 32 KiB
//     or more is a file, DataDir/blobs/<2 hex>/<sha256>, fsynced (with its
//     directory) before the row that references it commits; the row keeps
//     in_file = 1 and no data (decision 0014).
//   - events: the outbox and the change log at once. Each change writes its
//     event here in its own transaction; the relay publishes unpublished rows
//     in seq order; GetChanges and WatchChanges read them by account and
//     state. Rows older than the retention window are pruned and the
//     account's min_state raised, below which changes cannot be calculated.
//   - writebacks: device changes on IMAP accounts waiting for imapsync.
//   - lease_tokens: per account and fetcher service, the largest fencing
//     token (decision 0011) accepted with a fetcher write. Every fetcher
//     write checks and raises it in its own transaction, under the account
//     lock; a smaller token fails with ErrStaleLease.
//
// Errors: ErrNotFound, ErrInvalid, ErrConflict, ErrPrecondition,
// ErrStaleLease, ErrStaleGeneration and ErrCannotCalculateChanges, wrapped
// with detail; callers test with errors.Is.
package db
