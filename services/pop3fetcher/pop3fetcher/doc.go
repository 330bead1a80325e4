// Package pop3fetcher is the mailbus POP3 fetcher service: for each POP3
// account in the store it polls the server, downloads what is new and
// stores it through the store's IngestService; in delete mode it then
// deletes it from the server. Mail flows one way, from the server into the
// store; the only write to the server is DELE.
//
// # Guarantees
//
//   - Byte-exact: a message is stored exactly as the server sends it (RETR,
//     with dot-stuffing undone by pkg/pop3). A message without a final line
//     break arrives with a CRLF the server appends (RFC 1939); for a server
//     listed in Config.ExactListSizes (one whose LIST sizes are exact, as
//     Dovecot's are) that CRLF is dropped (pkg/pop3.TrimAddedCRLF) and the
//     message is stored as delivered. By default it is kept: with a server
//     whose LIST size is two short of a message that does end in CRLF,
//     trimming would drop a CRLF of the message. It is streamed from the
//     POP3 connection into the ingest stream in 1 MiB chunks (pkg/ingest,
//     at most two per stream), so the fetcher never holds a whole
//     message, let alone many, in memory.
//   - Nothing lost: DELE is sent only for a message the store has durably
//     acknowledged (an IngestMessages result) in this pass, or whose octets
//     the store has from an earlier one (a known UIDL is downloaded again
//     and compared with the stored content hash: a server may reuse a UIDL,
//     see "Reused UIDLs"), and the server applies deletions only at a
//     successful QUIT. A crash or a cut connection at any point leaves the
//     message on the server, and the next pass finishes the job: a message
//     stored but not deleted is deleted then.
//   - No duplicates: ingest is idempotent by UIDL, and each pass downloads
//     only the UIDLs the store does not have; a retried message is answered
//     "already stored" (no second copy, no second message.created event).
//   - Nothing half-stored: a message whose download fails or is cancelled
//     is abandoned by cutting the ingest stream without its end_of_message,
//     which makes the store drop it; the complete messages sent before it
//     are committed first.
//
// # Running accounts
//
// Fetcher.Run runs one worker per POP3 account (pkg/accountrun: accounts
// added, changed or removed are noticed without a restart). A worker loops:
// one poll pass (Fetcher.Poll), then a wait of the account's poll_interval
// with ±10 % jitter, and never less than the server's LOGIN-DELAY (RFC
// 2449). After a temporary error (network, a host name not found (it may be
// a passing DNS failure), timeout, protocol error, [IN-USE], [SYS/TEMP],
// [LOGIN-DELAY], a "-ERR" without a response code to STAT, LIST, UIDL or
// DELE, the store unreachable) the account is reported
// RETRYING and the worker waits a jittered exponential backoff (pkg/backoff,
// Config.RetryMin to RetryMax). After a permanent one (credentials refused
// or [AUTH], [SYS/PERM], an untrusted or mismatching certificate, STLS not
// offered when the account asks for STARTTLS, a mechanism the server does
// not offer) the account is reported PARKED with the reason and is not
// polled again: any update of the account (UpdateAccount, which un-parks it
// and raises its generation) restarts its worker.
//
// # One pass
//
// Read the secret (GetAccountSecret); if the store has a newer generation
// of the account than the worker (it was updated), stop there: the new
// secret is never sent to the old host, and the worker, restarted by the
// supervisor, polls with the new configuration. Connect (implicit TLS, STLS, or
// plaintext only when the account says SECURITY_NONE; certificates are
// verified against the system roots or Config.RootCAs unless the account
// sets insecure_skip_verify, which is logged as a warning); when CAPA
// offers UTF8 (RFC 6856), send it before authenticating and, if the server
// refuses it there, once more after (a server refusing it both times is
// logged once per generation; it may rewrite mail with raw UTF-8);
// authenticate (XOAUTH2 accounts with SASL XOAUTH2; password accounts with
// SASL PLAIN when CAPA offers it, else APOP when CAPA lists neither USER
// nor PLAIN and the greeting has a timestamp, else USER/PASS); STAT; LIST;
// ListUpstreamIds;
// UIDL. New messages (UIDL unknown to the store, or known but found to be
// another message: see "Reused UIDLs") are retrieved in server order,
// pipelined when the server offers PIPELINING, and streamed into
// IngestMessages; the fetcher asks the store to commit every
// Config.FlushMessages messages or Config.FlushBytes octets. In delete mode
// the messages the store acknowledged, and those whose octets it already
// had, are marked with DELE; then QUIT. A server without UIDL is handled as
// docs/decisions/0005-pop3-without-uidl.md describes (IdentityHeaders,
// IdentityContent).
//
// # Reused UIDLs
//
// RFC 1939 lets a server give a unique-id to a new message once the one
// that had it is gone, so a UIDL the store has (ListUpstreamIds: UIDL,
// stored size and content hash, or a tombstone for a message deleted in
// the store) does not prove the message is the stored one
// (docs/decisions/0013-pop3-uidl-reuse.md). In delete mode a known UIDL
// still on the server is downloaded into the spool file and marked with
// DELE only if it hashes to the stored content hash. In keep mode it is
// known without a download when the stored size matches the LIST size
// (equal, or two more when the server appended CRLF to a message without
// a final line break and the fetcher did not trim it) or when it is a
// tombstone; otherwise it is downloaded and compared. A message that is
// not the stored one is new: it is stored under the derived id
// "<uidl>#<16 hex digits of its SHA-256>" (deterministic, so a retry
// stores it once; PassResult.Reused counts them) and, in delete mode,
// deleted after the store acknowledges it.
//
// A message larger than Config.MaxMessageSize (by LIST, or found so while
// reading) is not downloaded (or abandoned), stays on the server, counts once
// in mailbus_pop3_errors_total{kind="too_large"} and is named in the reason
// of the account's IDLE status after every pass, for as long as it is
// there; it is never retried in a loop, since LIST tells its size without
// downloading it. A message the store refuses is remembered and not
// downloaded again until the account changes generation.
//
// Every network operation has a deadline (Config.Timeout): a silent server
// fails the pass, it never hangs a worker. Likewise every call to the store
// is bounded by Config.StoreTimeout: GetAccountSecret, ListUpstreamIds (to
// each batch) and ReportAccountStatus, and an ingest stream on which the
// store takes no data and answers nothing for that long while the fetcher
// waits on it (a blocked send, or a flush or the end of the stream not
// answered; pkg/ingest's watchdog) is cut; the pass then fails
// (temporary; a status report that fails is only logged).
// Progress reports go through a goroutine of their own, so a slow store
// never holds up a download; a report not yet sent is replaced by a newer
// one, and none is sent after the pass's final status.
//
// # Status and events
//
// Each pass reports the account status: INITIAL_SYNC (first successful pass
// not yet done) or SYNCING with progress while it downloads (at most every
// Config.ProgressEvery), then IDLE with last_success_time; RETRYING or PARKED
// with a reason that names the step and the server's answer and never holds
// a secret. The store makes an account.status event of each change of
// state, reason or progress; a pass that only moves last_success_time is
// recorded without an event, so polling alone does not flood the event
// stream.
//
// # Shutdown
//
// When Run's context ends, each worker's pass stops: a message being
// downloaded is abandoned (not stored), the complete messages already sent
// are committed if the store answers in time, and if the POP3 session is
// still usable it ends with DELE and QUIT (safe, since only stored messages
// are marked with DELE). All of that shares one deadline,
// Config.ShutdownGrace after the context ended, fixed once per pass: the
// commit wait, DELE and QUIT together never take longer than the grace.
// Run returns when every worker has.
//
// # Metrics
//
// mailbus_pop3_messages_fetched_total, mailbus_pop3_bytes_fetched_total,
// mailbus_pop3_errors_total{kind}, mailbus_pop3_poll_duration_seconds{result}
// and mailbus_pop3_accounts{state}, plus pkg/serving's gRPC and process
// metrics, on Config.Registry; the gRPC health service reports SERVING.
package pop3fetcher
