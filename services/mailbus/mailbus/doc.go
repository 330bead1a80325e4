// Package mailbus will be the all-in-one mailbus command: the store,
// imapsync and pop3fetcher in one process on an embedded NATS and SQLite,
// the demo, and the command-line client.
//
// Not implemented yet: this module is a placeholder so that the workspace
// layout is complete; the work is tracked by the mailbus command issue.
package mailbus
