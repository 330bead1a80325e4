// Package pop3 is a streaming, byte-exact POP3 client.
//
// It implements RFC 1939 (POP3), RFC 2449 (CAPA, PIPELINING, RESP-CODES,
// LOGIN-DELAY), RFC 2595 (STLS), RFC 5034 (SASL AUTH, with PLAIN and
// XOAUTH2), RFC 3206 (the SYS/TEMP, SYS/PERM and AUTH response codes) and
// the UTF8 command of RFC 6856, plus APOP from RFC 1939 section 7.
//
// # Byte-exactness
//
// On the wire a multi-line response (RETR, TOP) is a sequence of lines, each
// ended by CRLF, followed by the terminator line "." CRLF; any line that
// begins with "." is sent with one extra "." in front (dot-stuffing).
// Retr returns exactly the octets the server sent between the CRLF that ends
// the "+OK" status line and the final "." CRLF, with the one stuffed "."
// removed from the start of every line. "Line" here means what follows a
// CRLF pair; a bare CR or a bare LF is ordinary data and is passed through
// unchanged, as are all 256 octet values and lines of any length. The CRLF
// that ends the last line belongs to the message.
//
// Consequence: a message stored on the server without a final line break
// (say "abc") cannot be told apart on the wire from "abc" CRLF: RFC 1939
// makes the server end the response with CRLF "." CRLF, so the server
// appends a CRLF, and Retr returns "abc" CRLF. Where the server's LIST
// size is exact, TrimAddedCRLF recognises and drops that appended CRLF
// (opt-in; see there), which gives back the message as stored.
//
// What Dovecot does (checked against Dovecot 2.3.19.1 with this client):
// dot lines, lines of any length, every octet other than LF (NUL, bare CR,
// 8-bit) and 20 MB messages arrive exactly as stored; a message without a
// final line break arrives with CRLF appended while LIST reports the stored
// size (so TrimAddedCRLF restores it); each bare LF of a stored message is
// sent as CRLF (LIST counts it so). One Dovecot defect no client can undo:
// it does not dot-stuff a "." that is the very first octet of a message,
// so that dot is lost (and a message whose first line is "." ends early).
// Real messages start with a header field, so this matters only to tests.
//
// A server that advertises UTF8 (RFC 6856) may rewrite messages with raw
// UTF-8 for a session that has not sent UTF8; a caller that wants the
// octets as the server holds them calls Client.UTF8 when
// Capabilities.UTF8 says it is offered. Dovecot 2.3 does not advertise
// UTF8 in POP3 and answers the command with "-ERR"; it sends 8-bit octets
// unchanged regardless.
//
// # Errors
//
// A "-ERR" answer is returned as *Error, carrying the RFC 2449/3206 response
// code ("IN-USE", "AUTH", "SYS/TEMP", "SYS/PERM", "LOGIN-DELAY", or "") and
// the command that failed. Temporary reports whether an error is worth
// retrying later:
//
//   - temporary: [IN-USE], [SYS/TEMP], [LOGIN-DELAY], a "-ERR" greeting,
//     network errors, timeouts, a connection closed by the server,
//     ErrClosed (a new connection may work), and protocol errors (a server
//     that answered garbage: retry with back-off rather than give up);
//   - permanent: [AUTH], [SYS/PERM], a plain "-ERR" (no code) to USER, PASS,
//     APOP or AUTH, which is treated as bad credentials (ErrAuthFailed), TLS
//     certificate errors, ErrTooLarge, ErrSTLSUnavailable, ErrAuthUnsupported,
//     ErrUIDLUnsupported, ErrInvalidArgument (an argument with CR, LF or
//     NUL, which is never sent) and context cancellation.
//
// Sentinel errors are wrapped with %w; test them with errors.Is.
//
// # Deadlines and cancellation
//
// Every read from and write to the network has its own deadline,
// Options.Timeout after the operation starts (60 s by default), so a silent
// server never hangs the caller; a server that keeps sending is bounded by
// the response line limit (Options.MaxLineLength) and the message size
// limit (Options.MaxMessageSize). Every blocking method takes a
// context.Context; cancelling it closes the connection, and the method
// returns an error wrapping ctx.Err(). The context passed to Retr and Top
// also governs reading the returned message body, until it is closed.
//
// After a network error, a timeout, a cancelled context or a protocol error
// that leaves the client unsure where the response ends, the Client is
// unusable: every later call returns an error wrapping ErrClosed.
//
// A Client is not safe for concurrent use, except that Close may be called
// at any time from any goroutine. It logs only when Options.Logger is set,
// at debug level, and never logs passwords, tokens or message contents.
package pop3
