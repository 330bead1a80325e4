package imapconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailbus/mailbus/pkg/accountfield"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// PermanentError is an upstream error that retrying does not cure (bad
// credentials, a certificate that does not verify, no TLS where TLS is
// required): the account is parked until it is updated.
type PermanentError struct {
	Reason string
	Err    error
	// Auth: the server refused the credentials (a NO to LOGIN or
	// AUTHENTICATE that says so, or a bearer token refused in XOAUTH2's
	// error challenge).
	Auth bool
}

func (e *PermanentError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent returns a *PermanentError with reason, for err.
func Permanent(reason string, err error) error { return &PermanentError{Reason: reason, Err: err} }

// DialOptions are what Dial needs besides the account.
type DialOptions struct {
	// Timeout bounds the dial, and every operation of the connection
	// without progress (Conn.Do).
	Timeout time.Duration
	// RootCAs verify the server's certificate (nil: the system's).
	RootCAs *x509.CertPool
	// Secret is the password or OAuth 2.0 access token.
	Secret string
	// Handler takes what the server sends unasked (nil: dropped).
	Handler *imapclient.UnilateralDataHandler
	// WarnSkip is called when the account turns certificate verification
	// off (may be nil).
	WarnSkip func()
	// Wrap wraps the network connection (tests; may be nil).
	Wrap func(net.Conn) net.Conn
}

// Dial connects and authenticates. A host or username that cannot be sent
// (a database may hold one stored before the store checked them) is a
// permanent error: nothing is dialled.
func Dial(ctx context.Context, a *mailbusv1.Account, o DialOptions) (*Conn, error) {
	if err := accountfield.CheckConnect(a.Host, a.Username); err != nil {
		return nil, Permanent("the account cannot be used as stored; update it", err)
	}
	port := a.Port
	if port == 0 {
		port = 993
		if a.Security == mailbusv1.Security_SECURITY_STARTTLS || a.Security == mailbusv1.Security_SECURITY_NONE {
			port = 143
		}
	}
	addr := net.JoinHostPort(a.Host, strconv.Itoa(int(port)))
	tlsConf := &tls.Config{ServerName: a.Host, RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12}
	if a.InsecureSkipVerify {
		tlsConf.InsecureSkipVerify = true
		if o.WarnSkip != nil {
			o.WarnSkip()
		}
	}
	d := &net.Dialer{Timeout: o.Timeout}
	dctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	raw, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("imapconn: dial %s: %w", addr, err)
	}
	if o.Wrap != nil {
		raw = o.Wrap(raw)
	}
	c := &Conn{raw: raw, timeout: o.Timeout}
	opts := &imapclient.Options{TLSConfig: tlsConf, UnilateralDataHandler: o.Handler}
	err = c.Do(ctx, func(*Guard) error {
		switch a.Security {
		case mailbusv1.Security_SECURITY_STARTTLS:
			cl, err := imapclient.NewStartTLS(raw, opts)
			if err != nil {
				return classifyTLS(fmt.Errorf("imapconn: STARTTLS with %s: %w", addr, err))
			}
			c.c = cl
		case mailbusv1.Security_SECURITY_NONE:
			c.c = imapclient.New(raw, opts)
		default:
			tc := tls.Client(raw, tlsConf)
			if err := tc.HandshakeContext(ctx); err != nil {
				return classifyTLS(fmt.Errorf("imapconn: TLS with %s: %w", addr, err))
			}
			c.mu.Lock()
			c.raw = tc
			c.mu.Unlock()
			c.c = imapclient.New(tc, opts)
		}
		if err := c.c.WaitGreeting(); err != nil {
			return fmt.Errorf("imapconn: greeting from %s: %w", addr, err)
		}
		return authenticate(c.c, a, o.Secret)
	})
	if err != nil {
		if c.c != nil {
			c.c.Close()
		}
		raw.Close()
		return nil, err
	}
	if err := c.Do(ctx, func(*Guard) error {
		caps, err := c.c.Capability().Wait()
		c.caps = caps
		return err
	}); err != nil {
		c.c.Close()
		return nil, fmt.Errorf("imapconn: capability: %w", err)
	}
	return c, nil
}

// classifyTLS marks certificate and protocol errors as permanent.
func classifyTLS(err error) error {
	var (
		unknown  x509.UnknownAuthorityError
		host     x509.HostnameError
		invalid  x509.CertificateInvalidError
		verify   *tls.CertificateVerificationError
		recErr   tls.RecordHeaderError
		imapErr  *imap.Error
		alertErr tls.AlertError
	)
	switch {
	case errors.As(err, &verify), errors.As(err, &unknown), errors.As(err, &host), errors.As(err, &invalid):
		return Permanent("the server certificate does not verify (set insecure_skip_verify only for a server you trust)", err)
	case errors.As(err, &recErr), errors.As(err, &alertErr):
		return Permanent("TLS handshake failed (does the server speak TLS on this port?)", err)
	case errors.As(err, &imapErr):
		return Permanent("the server refused STARTTLS", err)
	}
	return err
}
