package pop3fetcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/accountrun"
	"github.com/mailbus/mailbus/pkg/pop3"
)

// PassError is why a poll pass failed. Its Reason is what the account
// status shows: it names the step and the server's answer, and never
// contains a secret.
type PassError struct {
	// Kind is one of the Kind constants.
	Kind string
	// Permanent errors park the account until it is updated; the others
	// are retried with backoff.
	Permanent bool
	// Reason is a human-readable explanation.
	Reason string
	// Err is the underlying error.
	Err error
}

func (e *PassError) Error() string { return e.Reason }

func (e *PassError) Unwrap() error { return e.Err }

// errAccountGone: the store no longer has the account. The worker stops;
// the supervisor notices the removal on its next look.
var errAccountGone = errors.New("pop3fetcher: account no longer exists")

// errAccountChanged: the store has a newer generation of the account than
// the pass (it was updated). The pass ends before it connects; the worker
// waits for the supervisor to restart it with the new configuration.
var errAccountChanged = errors.New("pop3fetcher: account changed")

// errNoSecret: the store has no password for the account (an update that
// changed its host, port or security cleared it); the account is parked
// until it gets one.
var errNoSecret = errors.New("the account has no password stored (changing its host, port or security clears it): set it with `mailbus account update ACCOUNT --password`")

// errStaleLease: the store refused a write because another replica has
// claimed the account since (a larger lease token). The worker stops
// working the account; its lease is gone, or about to be found gone.
var errStaleLease = errors.New("pop3fetcher: another replica works the account")

// errReauthorization: the store answered REAUTHORIZATION_NEEDED (the OAuth
// 2.0 refresh token was refused, decision 0036). The store has parked the
// account with its reason; the worker parks too, reports nothing and asks
// no more.
var errReauthorization = errors.New("re-authorization needed: the authorization server refused the account's refresh token; the store has parked the account")

// storeError marks an error of a call to the store.
type storeError struct {
	op  string
	err error
}

func (e *storeError) Error() string { return fmt.Sprintf("store: %s: %v", e.op, e.err) }
func (e *storeError) Unwrap() error { return e.err }

func storeErr(op string, err error) error {
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%w: store: %s: %w", errAccountGone, op, err)
	}
	if accountrun.IsReauthorizationNeeded(err) {
		return &PassError{Kind: KindReauth, Permanent: true, Err: fmt.Errorf("%w: %w", errReauthorization, err), Reason: errReauthorization.Error()}
	}
	return &storeError{op: op, err: err}
}

// configError marks an account configuration that cannot work.
type configError struct{ msg string }

func (e *configError) Error() string { return e.msg }

// classify turns an error of a pass into a PassError: what kind it is,
// whether it is permanent, and a reason for the account status. step
// names what the pass was doing ("connect", "login", "RETR" ...).
func classify(step string, err error) *PassError {
	var pe *PassError
	if errors.As(err, &pe) {
		return pe
	}
	out := &PassError{Err: err, Reason: step + ": " + err.Error()}
	var (
		se   *storeError
		ce   *configError
		perr *pop3.Error
		ne   net.Error
	)
	switch {
	case errors.Is(err, errAccountGone):
		out.Kind, out.Permanent = KindConfig, true
	case errors.As(err, &ce), errors.Is(err, pop3.ErrInvalidArgument):
		// A configuration that cannot work, or a username or secret that
		// cannot be sent (CR, LF or NUL): the same every time.
		out.Kind, out.Permanent = KindConfig, true
	case errors.As(err, &se):
		out.Kind = KindStore
	case errors.Is(err, pop3.ErrAuthFailed), errors.Is(err, pop3.ErrAuthUnsupported), errors.Is(err, pop3.ErrAPOPUnavailable):
		out.Kind, out.Permanent = KindAuth, true
	case errors.Is(err, pop3.ErrSTLSUnavailable), certificateError(err):
		out.Kind, out.Permanent = KindTLS, true
	case errors.As(err, &perr):
		switch {
		case codeIs(perr.Code, "IN-USE"):
			out.Kind = KindInUse
		case codeIs(perr.Code, "LOGIN-DELAY"):
			out.Kind = KindLoginDelay
		default:
			out.Kind = KindServer
		}
		out.Permanent = !pop3.Temporary(err) && !plainTransactionErr(perr)
	case errors.Is(err, pop3.ErrProtocol):
		out.Kind = KindProtocol
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		out.Kind = KindTimeout
	default:
		out.Kind = KindNetwork
		// A host name not found may be a DNS hiccup or a zone being
		// changed: retried with backoff (pkg/pop3 calls it permanent).
		var dns *net.DNSError
		out.Permanent = !pop3.Temporary(err) && !(errors.As(err, &dns) && dns.IsNotFound)
	}
	return out
}

// plainTransactionErr reports whether e is a "-ERR" without a response code
// to STAT, LIST, UIDL or DELE: after a successful login such an answer says
// nothing about the account's configuration (a maildrop being rewritten, a
// server hiccup), so the pass is retried with backoff rather than the
// account parked. [SYS/PERM] stays permanent, and so do refused logins.
func plainTransactionErr(e *pop3.Error) bool {
	if e.Code != "" {
		return false
	}
	verb, _, _ := strings.Cut(e.Command, " ")
	switch verb {
	case "STAT", "LIST", "UIDL", "DELE":
		return true
	}
	return false
}

func codeIs(code, want string) bool {
	return code == want || len(code) > len(want) && code[:len(want)+1] == want+"/"
}

// certificateError reports whether err is a TLS failure that will not fix
// itself: an untrusted, expired or mismatching certificate, or a server that
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
