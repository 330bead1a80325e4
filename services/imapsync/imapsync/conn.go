package imapsync

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/mailbus/mailbus/pkg/accountfield"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// PermanentError is an upstream error that retrying does not cure (bad
// credentials, a certificate that does not verify, no TLS where TLS is
// required): the account is parked until it is updated.
type PermanentError struct {
	Reason string
	Err    error
	// auth: the server refused the credentials (a NO to LOGIN or
	// AUTHENTICATE that says so).
	auth bool
}

func (e *PermanentError) Error() string { return e.Reason + ": " + e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

func permanent(reason string, err error) error { return &PermanentError{Reason: reason, Err: err} }

// errTimeout is returned when an IMAP operation took longer than its
// deadline; the connection is closed then.
var errTimeout = errors.New("imapsync: upstream operation timed out")

// conn is one IMAP connection with deadline handling. go-imap has no
// context support: a watchdog closes the network connection when the
// operation's deadline passes or its context ends, which fails every
// pending command.
type conn struct {
	c       *imapclient.Client
	raw     net.Conn
	timeout time.Duration
	caps    imap.CapSet

	mu       sync.Mutex
	timedOut bool
	// broken is set by abandon: a FETCH was left unread, so Close does
	// not log out.
	broken bool
	// release gives the host's connection slot back (pkg/hostlimit); Close
	// calls it.
	release func()
	// yield closes when an optional connection (IDLE) is asked to give
	// its slot to a work connection; nil for a work connection.
	yield <-chan struct{}
}

// guard bounds one operation: the connection is closed when ctx ends or
// when touch is not called within the timeout. done must be called; it
// returns errTimeout when the watchdog fired.
type guard struct {
	c     *conn
	t     *time.Timer
	stop  func() bool
	fired chan struct{}
}

func (c *conn) guard(ctx context.Context) *guard {
	g := &guard{c: c, fired: make(chan struct{})}
	var once sync.Once
	kill := func() {
		once.Do(func() {
			c.mu.Lock()
			c.timedOut = true
			raw := c.raw
			c.mu.Unlock()
			close(g.fired)
			raw.Close()
		})
	}
	g.t = time.AfterFunc(c.timeout, kill)
	g.stop = context.AfterFunc(ctx, kill)
	return g
}

// touch extends the deadline: the operation made progress.
func (g *guard) touch() { g.t.Reset(g.c.timeout) }

func (g *guard) done(err error) error {
	g.t.Stop()
	g.stop()
	select {
	case <-g.fired:
		if err == nil {
			err = errTimeout
		}
		return fmt.Errorf("%w (%v)", errTimeout, err)
	default:
		return err
	}
}

// do runs f under a guard.
func (c *conn) do(ctx context.Context, f func(g *guard) error) error {
	g := c.guard(ctx)
	return g.done(f(g))
}

// abandon ends a FETCH whose response is not read to its end (a failure
// mid-FETCH) and leaves the connection unusable: the network connection
// is closed, so that nothing more is read from the server (not the rest
// of a hostile or dripping literal), and Close will not log out. The
// command is not drained: reading the rest of an abandoned literal races
// with go-imap's reader goroutine. Nor may anything write to the client
// now: a failed write (LOGOUT on the closed connection) makes go-imap
// beta.8 complete the pending FETCH from the writing goroutine, closing
// its channel while the reader goroutine may be sending on it.
func (c *conn) abandon() {
	c.mu.Lock()
	c.broken = true
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		raw.Close()
	}
}

// Close logs out politely (bounded) and closes the connection.
func (c *conn) Close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	broken := c.broken
	c.mu.Unlock()
	if !broken {
		done := make(chan struct{})
		go func() {
			c.c.Logout().Wait()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
		}
	}
	// imapclient.Client.Close waits for its reader goroutine, which never
	// ends while it is stuck on a body nobody reads (an abandoned FETCH).
	// Closing the network connection first ends what can end; the wait
	// is then bounded (a stuck reader goroutine is left behind).
	c.mu.Lock()
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		raw.Close()
	}
	closed := make(chan struct{})
	go func() {
		c.c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(closeTimeout):
	}
	if c.release != nil {
		c.release() // the host's connection slot (hostlimit)
	}
}

// closeTimeout bounds the wait for go-imap's Client.Close.
const closeTimeout = 2 * time.Second

// dialOptions are what dial needs besides the account.
type dialOptions struct {
	timeout  time.Duration
	rootCAs  *x509.CertPool
	secret   string
	handler  *imapclient.UnilateralDataHandler
	warnSkip func()
	wrap     func(net.Conn) net.Conn
}

// dial connects and authenticates. A host or username that cannot be sent
// (a database may hold one stored before the store checked them) is a
// permanent error: nothing is dialled.
func dial(ctx context.Context, a *mailbusv1.Account, o dialOptions) (*conn, error) {
	if err := accountfield.CheckConnect(a.Host, a.Username); err != nil {
		return nil, permanent("the account cannot be used as stored; update it", err)
	}
	port := a.Port
	if port == 0 {
		port = 993
		if a.Security == mailbusv1.Security_SECURITY_STARTTLS || a.Security == mailbusv1.Security_SECURITY_NONE {
			port = 143
		}
	}
	addr := net.JoinHostPort(a.Host, strconv.Itoa(int(port)))
	tlsConf := &tls.Config{ServerName: a.Host, RootCAs: o.rootCAs, MinVersion: tls.VersionTLS12}
	if a.InsecureSkipVerify {
		tlsConf.InsecureSkipVerify = true
		if o.warnSkip != nil {
			o.warnSkip()
		}
	}
	d := &net.Dialer{Timeout: o.timeout}
	dctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	raw, err := d.DialContext(dctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("imapsync: dial %s: %w", addr, err)
	}
	if o.wrap != nil {
		raw = o.wrap(raw)
	}
	c := &conn{raw: raw, timeout: o.timeout}
	opts := &imapclient.Options{TLSConfig: tlsConf, UnilateralDataHandler: o.handler}
	err = c.do(ctx, func(*guard) error {
		switch a.Security {
		case mailbusv1.Security_SECURITY_STARTTLS:
			cl, err := imapclient.NewStartTLS(raw, opts)
			if err != nil {
				return classifyTLS(fmt.Errorf("imapsync: STARTTLS with %s: %w", addr, err))
			}
			c.c = cl
		case mailbusv1.Security_SECURITY_NONE:
			c.c = imapclient.New(raw, opts)
		default:
			tc := tls.Client(raw, tlsConf)
			if err := tc.HandshakeContext(ctx); err != nil {
				return classifyTLS(fmt.Errorf("imapsync: TLS with %s: %w", addr, err))
			}
			c.mu.Lock()
			c.raw = tc
			c.mu.Unlock()
			c.c = imapclient.New(tc, opts)
		}
		if err := c.c.WaitGreeting(); err != nil {
			return fmt.Errorf("imapsync: greeting from %s: %w", addr, err)
		}
		return authenticate(c.c, a, o.secret)
	})
	if err != nil {
		if c.c != nil {
			c.c.Close()
		}
		raw.Close()
		return nil, err
	}
	if err := c.do(ctx, func(*guard) error {
		caps, err := c.c.Capability().Wait()
		c.caps = caps
		return err
	}); err != nil {
		c.c.Close()
		return nil, fmt.Errorf("imapsync: capability: %w", err)
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
		return permanent("the server certificate does not verify (set insecure_skip_verify only for a server you trust)", err)
	case errors.As(err, &recErr), errors.As(err, &alertErr):
		return permanent("TLS handshake failed (does the server speak TLS on this port?)", err)
	case errors.As(err, &imapErr):
		return permanent("the server refused STARTTLS", err)
	}
	return err
}

// authenticate logs in with the account's method: an OAuth 2.0 access
// token with OAUTHBEARER or XOAUTH2 (TokenMechanism), SASL PLAIN when the
// server offers it, else LOGIN.
func authenticate(c *imapclient.Client, a *mailbusv1.Account, secret string) error {
	caps := c.Caps()
	var err error
	switch {
	case a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2:
		if TokenMechanism(caps) == sasl.OAuthBearer {
			err = c.Authenticate(NewOAuthBearerClient(a.Username, secret))
		} else {
			err = c.Authenticate(NewXOAuth2Client(a.Username, secret))
		}
	case caps.Has(imap.AuthCap(sasl.Plain)):
		err = c.Authenticate(sasl.NewPlainClient("", a.Username, secret))
	default:
		if caps.Has(imap.CapLoginDisabled) {
			return permanent("the server refuses LOGIN on this connection and offers no SASL PLAIN (use TLS)", errors.New("LOGINDISABLED"))
		}
		err = c.Login(a.Username, secret).Wait()
	}
	if err == nil {
		return nil
	}
	return authError(err)
}

// authError classifies a failed LOGIN or AUTHENTICATE (decision 0018): a
// token refused in XOAUTH2's error challenge, or a NO that says the
// credentials are wrong ([AUTHENTICATIONFAILED], [AUTHORIZATIONFAILED], or
// no code at all), is permanent and parks the account (an OAuth 2.0
// account first renews its token once, see account.connect); anything else ([UNAVAILABLE], [SERVERBUG], other codes, BAD,
// a BYE or a network error) is retried with backoff.
func authError(err error) error {
	var refused *TokenRefusedError
	if errors.As(err, &refused) {
		return &PermanentError{Reason: "authentication failed", Err: err, auth: true}
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) && imapErr.Type == imap.StatusResponseTypeNo {
		switch imapErr.Code {
		case "", imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed:
			return &PermanentError{Reason: "authentication failed", Err: err, auth: true}
		}
	}
	return fmt.Errorf("imapsync: authenticate: %w", err)
}

// TokenMechanism chooses the SASL mechanism for an OAuth 2.0 access token
// from the server's capabilities: OAUTHBEARER (RFC 7628) when it offers
// AUTH=OAUTHBEARER, else XOAUTH2 (also when it lists neither: Gmail and
// Outlook take XOAUTH2). OAUTHBEARER is preferred as the standard
// mechanism, the one Dovecot recommends, with a specified failure reply
// (decision 0037).
func TokenMechanism(caps imap.CapSet) string {
	if caps.Has(imap.AuthCap(sasl.OAuthBearer)) {
		return sasl.OAuthBearer
	}
	return "XOAUTH2"
}

// oauthBearer is a SASL OAUTHBEARER client (RFC 7628). go-sasl has one,
// but it answers the server's error challenge with an error, which
// go-imap's Authenticate returns with the command still waiting for the
// client's response: the connection is then stuck. This one answers it
// with %x01 (section 3.2.3), so the server ends the command with NO and
// the failure is classified like any other.
type oauthBearer struct {
	user, token string
}

// NewOAuthBearerClient returns a SASL client for the OAUTHBEARER
// mechanism; user is sent as the authorization identity.
func NewOAuthBearerClient(user, token string) sasl.Client { return &oauthBearer{user, token} }

func (o *oauthBearer) Start() (string, []byte, error) {
	user := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(o.user)
	return sasl.OAuthBearer, []byte("n,a=" + user + ",\x01auth=Bearer " + o.token + "\x01\x01"), nil
}

func (o *oauthBearer) Next(challenge []byte) ([]byte, error) {
	// The server's error status (JSON); the dummy response %x01 makes it
	// fail the command.
	return []byte{0x01}, nil
}

// xoauth2 is a SASL XOAUTH2 client (Google, Microsoft): the initial
// response carries the user and the bearer token; on failure the server
// sends a JSON challenge. Google's documentation has the client answer it
// with an empty line, after which the server says NO; but go-imap sends
// an empty response as "=", which Dovecot answers with BAD ("Invalid
// base64 data in continued response"), a protocol error that would be
// retried forever instead of renewing the token. So the challenge itself
// is taken as the verdict: Next returns a *TokenRefusedError, which ends
// Authenticate at once, and the connection (left in the middle of the
// command) is closed by dial.
type xoauth2 struct {
	user, token string
}

// NewXOAuth2Client returns a SASL client for the XOAUTH2 mechanism.
func NewXOAuth2Client(user, token string) sasl.Client { return &xoauth2{user, token} }

func (x *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

func (x *xoauth2) Next(challenge []byte) ([]byte, error) {
	return nil, &TokenRefusedError{Mechanism: "XOAUTH2", Status: printableStatus(challenge)}
}

// TokenRefusedError is a server's refusal of a bearer token in XOAUTH2's
// error challenge: a credential failure (the connection is unusable after
// it and must be closed).
type TokenRefusedError struct {
	Mechanism string
	// Status is the challenge's JSON status, made printable.
	Status string
}

func (e *TokenRefusedError) Error() string {
	return e.Mechanism + ": the server refused the token: " + e.Status
}

// printableStatus returns a challenge for an error message: at most 200
// bytes, control characters and non-ASCII bytes as '?'.
func printableStatus(b []byte) string {
	b = b[:min(len(b), 200)]
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}
