package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// bufferSize is the size of the read and write buffers. Message bodies are
// streamed through the read buffer, so it also sets the largest chunk a
// Read of a message returns.
const bufferSize = 32 << 10

// Client is a POP3 session. Create it with Dial or NewClient.
type Client struct {
	opts Options
	host string // for TLS ServerName
	log  *slog.Logger

	raw  net.Conn      // the transport as dialled
	dc   *deadlineConn // raw, with a deadline on every operation
	conn net.Conn      // dc, or a *tls.Conn over dc
	br   *bufio.Reader
	bw   *bufio.Writer
	line []byte // reused buffer of readLine

	greeting Greeting
	caps     Capabilities
	capsOK   bool
	authed   bool
	utf8     bool // the server accepted UTF8 (RFC 6856)
	tlsState *tls.ConnectionState

	pending *messageReader // open RETR/TOP body, if any
	err     error          // sticky error that made the session unusable

	dead      atomic.Bool // the connection has been closed
	closeOnce sync.Once
	closeErr  error
}

// Greeting is the server's greeting.
type Greeting struct {
	// Text is the text after "+OK".
	Text string
	// Timestamp is the APOP timestamp ("<...@...>") found in Text, or "".
	Timestamp string
}

// minProgress is what a server must send per timeout while the client
// waits for it: time spent waiting in reads adds up until this much has
// come, so a server that drips a few octets at a time (a slowloris) times
// out as a silent one does, while a slow but steady one never does.
const minProgress = 1 << 10

// deadlineConn bounds each network operation, not the whole session: a
// write by timeout; reads by timeout of waiting for every minProgress
// octets (or since the last command was written).
type deadlineConn struct {
	net.Conn
	timeout time.Duration

	mu       sync.Mutex
	waited   time.Duration // blocked in Read since the last progress
	progress int           // octets read since then
}

func (d *deadlineConn) Read(p []byte) (int, error) {
	d.mu.Lock()
	budget := d.timeout - d.waited
	d.mu.Unlock()
	if budget <= 0 {
		return 0, os.ErrDeadlineExceeded
	}
	start := time.Now()
	if err := d.SetReadDeadline(start.Add(budget)); err != nil {
		return 0, err
	}
	n, err := d.Conn.Read(p)
	d.mu.Lock()
	d.waited += time.Since(start)
	d.progress += n
	if d.progress >= minProgress {
		d.waited, d.progress = 0, 0
	}
	d.mu.Unlock()
	return n, err
}

func (d *deadlineConn) Write(p []byte) (int, error) {
	// A command: the server has a fresh timeout to answer it.
	d.mu.Lock()
	d.waited, d.progress = 0, 0
	d.mu.Unlock()
	if err := d.SetWriteDeadline(time.Now().Add(d.timeout)); err != nil {
		return 0, err
	}
	return d.Conn.Write(p)
}

// Dial connects to addr ("host:port"), secures the connection as
// opts.Security says, and reads the greeting. With SecuritySTARTTLS it
// also issues CAPA and STLS, and fails with ErrSTLSUnavailable rather than
// continue in plaintext. ctx bounds the whole of Dial; opts.Timeout bounds
// each network operation in it.
func Dial(ctx context.Context, addr string, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("pop3: dial %s: %w", addr, err)
	}
	d := net.Dialer{Timeout: o.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pop3: dial %s: %w", addr, err)
	}
	return newClient(ctx, conn, host, o)
}

// NewClient starts a session over an established connection, as Dial does
// after dialling. For TLS, opts.TLSConfig must name the server
// (ServerName) unless it skips verification. On error conn is closed.
func NewClient(ctx context.Context, conn net.Conn, opts *Options) (*Client, error) {
	return newClient(ctx, conn, "", opts.withDefaults())
}

func newClient(ctx context.Context, conn net.Conn, host string, o Options) (*Client, error) {
	c := &Client{opts: o, host: host, log: o.Logger, raw: conn}
	c.dc = &deadlineConn{Conn: conn, timeout: o.Timeout}
	c.setTransport(c.dc)
	if err := c.start(ctx); err != nil {
		c.abort()
		return nil, err
	}
	return c, nil
}

func (c *Client) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("pop3: %w", err)
	}
	stop := context.AfterFunc(ctx, c.abort)
	defer stop()
	if c.opts.Security == SecurityTLS {
		if err := c.handshake(ctx); err != nil {
			return err
		}
	}
	if err := c.readGreeting(ctx); err != nil {
		return err
	}
	if c.opts.Security == SecuritySTARTTLS {
		return c.startTLS(ctx)
	}
	return nil
}

func (c *Client) setTransport(conn net.Conn) {
	c.conn = conn
	c.br = bufio.NewReaderSize(conn, bufferSize)
	c.bw = bufio.NewWriterSize(conn, 4096)
}

func (c *Client) readGreeting(ctx context.Context) error {
	st, err := c.readStatus(ctx, "")
	if err != nil {
		return err
	}
	switch st.kind {
	case statusErr:
		return st.toError("")
	case statusCont:
		return c.fail(&ProtocolError{Reason: "greeting is a continuation line"})
	}
	c.greeting = Greeting{Text: st.text, Timestamp: parseTimestamp(st.text)}
	return nil
}

// Greeting returns the server's greeting.
func (c *Client) Greeting() Greeting { return c.greeting }

// Close closes the connection without QUIT: messages marked with DELE are
// not deleted. It is safe to call from any goroutine, and more than once.
func (c *Client) Close() error {
	c.abort()
	return c.closeErr
}

// abort closes the connection once.
func (c *Client) abort() {
	c.closeOnce.Do(func() {
		c.dead.Store(true)
		c.closeErr = c.raw.Close()
	})
}

// fail records err as the reason the session is unusable, closes the
// connection and returns err.
func (c *Client) fail(err error) error {
	if c.err == nil {
		c.err = err
	}
	c.abort()
	return err
}

// begin starts a blocking operation: it checks that the session is
// usable, finishes an open message body, and makes ctx's cancellation close
// the connection until the returned stop is called.
func (c *Client) begin(ctx context.Context) (stop func() bool, err error) {
	if err := c.usable(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("pop3: %w", err)
	}
	if c.pending != nil {
		if err := c.pending.Close(); err != nil {
			return nil, err
		}
	}
	return context.AfterFunc(ctx, c.abort), nil
}

func (c *Client) usable() error {
	if c.err != nil {
		return fmt.Errorf("%w: %w", ErrClosed, c.err)
	}
	if c.dead.Load() {
		return ErrClosed
	}
	return nil
}

// ioError wraps a network error of operation what, replacing it by the
// context's error when a cancelled context caused it, and makes the
// session unusable.
func (c *Client) ioError(ctx context.Context, what string, err error) error {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		err = ctx.Err()
	case isEOF(err):
		err = fmt.Errorf("connection closed by server: %w", err)
	case errors.As(err, &ne) && ne.Timeout():
		err = fmt.Errorf("no progress within %v: %w", c.opts.Timeout, err)
	}
	return c.fail(fmt.Errorf("pop3: %s: %w", what, err))
}
