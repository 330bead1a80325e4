package pop3

import (
	"crypto/tls"
	"log/slog"
	"time"
)

// Security says how the connection is protected.
type Security int

const (
	// SecurityTLS is implicit TLS from the first byte (port 995). It is the
	// zero value, so an unset Options is safe.
	SecurityTLS Security = iota
	// SecuritySTARTTLS connects in plaintext (port 110) and upgrades with
	// STLS (RFC 2595) before anything else is sent. If the server does not
	// offer STLS, or refuses it, Dial fails with ErrSTLSUnavailable.
	SecuritySTARTTLS
	// SecurityNone is plaintext throughout. Use it only when asked to.
	SecurityNone
)

func (s Security) String() string {
	switch s {
	case SecurityTLS:
		return "tls"
	case SecuritySTARTTLS:
		return "starttls"
	case SecurityNone:
		return "none"
	}
	return "unknown"
}

// Defaults used for zero fields of Options.
const (
	DefaultTimeout        = 60 * time.Second
	DefaultMaxLineLength  = 64 << 10
	DefaultPipelineWindow = 16
)

// Options configure a Client. A nil *Options, and every zero field, means
// the default.
type Options struct {
	// Security selects implicit TLS (default), STARTTLS or plaintext.
	Security Security
	// TLSConfig is used for implicit TLS and STLS. If nil, or if its
	// ServerName is empty, the host part of the address given to Dial is
	// used as ServerName. Certificates are verified unless the config says
	// InsecureSkipVerify.
	TLSConfig *tls.Config
	// Timeout bounds each network operation (dial, TLS handshake, every
	// single write, and the wait for each KiB of an answer). It is an idle
	// timeout: a message that keeps arriving never times out; a silent
	// server does, and so does one that drips a few octets at a time
	// (waits add up until a KiB has come, or the next command is sent).
	// Default 60 s.
	Timeout time.Duration
	// MaxLineLength bounds a response line (status lines, CAPA, LIST and
	// UIDL lines); a longer one is a *ProtocolError wrapping ErrLineTooLong
	// and closes the connection. Message lines (RETR, TOP) are not bound by
	// it. Default 64 KiB.
	MaxLineLength int
	// MaxMessageSize bounds the octets a RETR or TOP may return; 0 means no
	// limit. Reading past it fails with ErrTooLarge. Closing the reader then
	// discards the rest of the message so the session stays usable, as long
	// as the rest ends within another MaxMessageSize octets; otherwise the
	// connection is closed.
	MaxMessageSize int64
	// PipelineWindow is how many RETR commands RetrPipelined keeps in flight
	// when the server offers PIPELINING. Default 16; 1 turns pipelining off.
	PipelineWindow int
	// Logger, if set, receives debug records of commands and status lines
	// (secrets redacted, no message contents). If nil nothing is logged.
	Logger *slog.Logger
}

func (o *Options) withDefaults() Options {
	var r Options
	if o != nil {
		r = *o
	}
	if r.Timeout <= 0 {
		r.Timeout = DefaultTimeout
	}
	if r.MaxLineLength <= 0 {
		r.MaxLineLength = DefaultMaxLineLength
	}
	if r.PipelineWindow <= 0 {
		r.PipelineWindow = DefaultPipelineWindow
	}
	if r.MaxMessageSize < 0 {
		r.MaxMessageSize = 0
	}
	return r
}
