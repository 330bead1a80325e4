// Package ingest tests pkg/ingest, the fetchers' ingest client, against a
// real store (SQLite in a temporary directory, an embedded NATS server):
// the ingest stream is cut at each step of sending a message, and the
// store restarted, and every message must end up stored exactly once,
// byte for byte, and a half-sent message never. See TestKillAtEachStep.
package ingest
