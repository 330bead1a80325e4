// Package pop3fetcher will be the mailbus POP3 fetcher service: one-way,
// byte-exact download of each POP3 account into the store (keep and delete
// modes), built on pkg/pop3.
//
// Not implemented yet: this module is a placeholder so that the workspace
// layout is complete; the work is tracked by the POP3 fetcher issue.
package pop3fetcher
