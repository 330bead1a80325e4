// Package imapsync will be the mailbus IMAP sync service: two-way sync of
// every folder of each IMAP account (IDLE push, CONDSTORE deltas, write-back
// of device changes through the store's IngestService).
//
// Not implemented yet: this module is a placeholder so that the workspace
// layout is complete; the work is tracked by the IMAP sync issue.
package imapsync
