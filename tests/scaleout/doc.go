// Package scaleout tests mailbus with several replicas of each fetcher:
// built mailbus-store, mailbus-imapsync and mailbus-pop3fetcher binaries
// as processes, an embedded NATS server whose JetStream KV holds the
// account leases, and IMAP and POP3 servers in the test process that
// report which replica works which account. See TestScaleOut.
package scaleout
