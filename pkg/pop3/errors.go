package pop3

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"strings"
)

// Sentinel errors. They are returned wrapped; test with errors.Is.
var (
	// ErrAuthFailed: the server rejected the credentials. A "-ERR" without a
	// response code, or with [AUTH], to USER, PASS, APOP or AUTH matches it.
	ErrAuthFailed = errors.New("pop3: authentication failed")
	// ErrAuthUnsupported: the requested mechanism is not offered by the
	// server's CAPA.
	ErrAuthUnsupported = errors.New("pop3: authentication mechanism not offered by server")
	// ErrAPOPUnavailable: APOP was requested but the greeting carries no
	// timestamp.
	ErrAPOPUnavailable = errors.New("pop3: greeting has no APOP timestamp")
	// ErrSTLSUnavailable: Security is STARTTLS but the server does not offer
	// STLS, or refused it. The client never continues in plaintext.
	ErrSTLSUnavailable = errors.New("pop3: server does not offer STLS")
	// ErrUIDLUnsupported: the server answered UIDL with a plain "-ERR".
	ErrUIDLUnsupported = errors.New("pop3: server does not support UIDL")
	// ErrTooLarge: a message is longer than Options.MaxMessageSize.
	ErrTooLarge = errors.New("pop3: message exceeds size limit")
	// ErrProtocol: the server's answer does not follow the protocol. Every
	// *ProtocolError matches it.
	ErrProtocol = errors.New("pop3: protocol error")
	// ErrLineTooLong: a response line is longer than Options.MaxLineLength.
	// It is returned inside a *ProtocolError.
	ErrLineTooLong = errors.New("pop3: response line too long")
	// ErrClosed: the client was closed, or an earlier error left the
	// connection unusable.
	ErrClosed = errors.New("pop3: connection closed")
	// ErrInvalidArgument: the caller gave an argument that cannot be sent,
	// such as a username or password with CR, LF or NUL (it would end the
	// command early and start another), or a message number below 1.
	// Nothing was sent; the same argument always fails the same way.
	ErrInvalidArgument = errors.New("pop3: invalid argument")
)

// Error is a "-ERR" answer from the server.
type Error struct {
	// Command is the command that failed, without secrets: "PASS",
	// "AUTH PLAIN", "RETR 7", or "" for the greeting.
	Command string
	// Code is the response code (RFC 2449 section 8) in upper case, such as
	// "IN-USE", "LOGIN-DELAY", "AUTH", "SYS/TEMP" or "SYS/PERM"; "" if the
	// answer had none.
	Code string
	// Message is the human-readable text after the code.
	Message string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("pop3: ")
	if e.Command == "" {
		b.WriteString("greeting")
	} else {
		b.WriteString(e.Command)
	}
	b.WriteString(": -ERR")
	if e.Code != "" {
		b.WriteString(" [" + e.Code + "]")
	}
	if e.Message != "" {
		b.WriteString(" " + e.Message)
	}
	return b.String()
}

// Temporary reports whether the condition may go away by itself: true for
// [IN-USE], [SYS/TEMP] and [LOGIN-DELAY] (and codes below them, such as
// "SYS/TEMP/x"), and for a "-ERR" greeting without a code (a busy server);
// false otherwise.
func (e *Error) Temporary() bool {
	for _, c := range []string{"IN-USE", "SYS/TEMP", "LOGIN-DELAY"} {
		if codeIs(e.Code, c) {
			return true
		}
	}
	return e.Code == "" && e.Command == ""
}

// Is makes errors.Is(err, ErrAuthFailed) true for a rejected login: a
// "-ERR" to USER, PASS, APOP or AUTH that has no code or the [AUTH] code.
// [IN-USE], [SYS/TEMP] and others on those commands are not auth failures.
func (e *Error) Is(target error) bool {
	return target == ErrAuthFailed && e.authFailure()
}

func (e *Error) authFailure() bool {
	if e.Code != "" && !codeIs(e.Code, "AUTH") {
		return false
	}
	verb, _, _ := strings.Cut(e.Command, " ")
	switch verb {
	case "USER", "PASS", "APOP", "AUTH":
		return true
	}
	return false
}

// codeIs reports whether code is want or a code below it in the hierarchy.
func codeIs(code, want string) bool {
	return code == want || strings.HasPrefix(code, want+"/")
}

// ProtocolError is an answer that does not follow the protocol, such as a
// bare "+OK" to STAT or a line that is neither "+OK" nor "-ERR".
type ProtocolError struct {
	Command string // the command being answered ("" for the greeting)
	Reason  string // what was wrong
	Line    string // the offending line, shortened and made printable
	Err     error  // an underlying cause such as ErrLineTooLong, or nil
}

func (e *ProtocolError) Error() string {
	cmd := e.Command
	if cmd == "" {
		cmd = "greeting"
	}
	s := "pop3: " + cmd + ": protocol error: " + e.Reason
	if e.Line != "" {
		s += ": " + e.Line
	}
	return s
}

// Unwrap returns ErrProtocol and the underlying cause, if any.
func (e *ProtocolError) Unwrap() []error {
	if e.Err == nil {
		return []error{ErrProtocol}
	}
	return []error{ErrProtocol, e.Err}
}

func protoErr(cmd, reason string, line []byte) *ProtocolError {
	return &ProtocolError{Command: cmd, Reason: reason, Line: printable(line, 80)}
}

// printable shortens b to at most max bytes and replaces control and 8-bit
// bytes, so that a server's garbage can be shown in an error message.
func printable(b []byte, max int) string {
	cut := false
	if len(b) > max {
		b, cut = b[:max], true
	}
	var s strings.Builder
	for _, c := range b {
		if c < 0x20 || c >= 0x7f {
			s.WriteString("\\x")
			s.WriteByte("0123456789abcdef"[c>>4])
			s.WriteByte("0123456789abcdef"[c&15])
			continue
		}
		s.WriteByte(c)
	}
	if cut {
		s.WriteString("...")
	}
	return s.String()
}

// Temporary reports whether an error returned by this package is worth
// retrying later with the same configuration. See the package
// documentation for the classification. Errors it does not know (for
// example one returned by a RetrPipelined callback) are reported as
// temporary: when in doubt, retry with back-off rather than give up.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrClosed) {
		return true // a new connection may well work
	}
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Temporary()
	}
	for _, perm := range []error{ErrAuthFailed, ErrAuthUnsupported, ErrAPOPUnavailable,
		ErrSTLSUnavailable, ErrUIDLUnsupported, ErrTooLarge, ErrInvalidArgument, context.Canceled} {
		if errors.Is(err, perm) {
			return false
		}
	}
	if certificateError(err) {
		return false
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return false
	}
	return true
}

// certificateError reports whether err is a TLS setup failure that will
// not fix itself: an untrusted or mismatching certificate, or a peer that
// does not speak TLS at all.
func certificateError(err error) bool {
	var (
		cve   *tls.CertificateVerificationError
		host  x509.HostnameError
		auth  x509.UnknownAuthorityError
		inval x509.CertificateInvalidError
		rec   tls.RecordHeaderError
	)
	return errors.As(err, &cve) || errors.As(err, &host) || errors.As(err, &auth) ||
		errors.As(err, &inval) || errors.As(err, &rec)
}

// isEOF reports whether err means the peer closed the connection.
func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}
