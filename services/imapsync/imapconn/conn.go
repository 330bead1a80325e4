// Package imapconn is imapsync's IMAP client connection: dialing and
// logging in (TLS, STARTTLS, SASL PLAIN, LOGIN, OAUTHBEARER and XOAUTH2,
// with failures classified as permanent or temporary, decision 0018), a
// deadline on every operation that moves with progress (decision 0006),
// and the commands the sync needs, each under that deadline: SELECT with
// CONDSTORE, STATUS, UID SEARCH, FETCH of UIDs, sizes and flags, STORE,
// UID EXPUNGE of given UIDs, MOVE with its COPYUID mapping (and the
// COPY, \Deleted, EXPUNGE fallback), APPEND, folder commands and IDLE.
//
// It holds no policy: what to sync, when, and what a refusal means for a
// write-back are imapsync's. It is built on go-imap v2 beta.8, which has
// no context support: a watchdog closes the network connection when an
// operation's deadline passes or its context ends, which fails every
// pending command, and the connection is then unusable. QRESYNC is never
// enabled (a VANISHED response kills a beta.8 connection).
package imapconn

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// ErrTimeout is returned when an IMAP operation took longer than its
// deadline; the connection is closed then.
var ErrTimeout = errors.New("imapconn: upstream operation timed out")

// Conn is one IMAP connection with deadline handling.
type Conn struct {
	c       *imapclient.Client
	raw     net.Conn
	timeout time.Duration
	caps    imap.CapSet

	mu       sync.Mutex
	timedOut bool
	// broken is set by Abandon: a FETCH was left unread, so Close does
	// not log out.
	broken bool
	// release gives the host's connection slot back (pkg/hostlimit); Close
	// calls it.
	release func()
	// yield closes when an optional connection (IDLE) is asked to give
	// its slot to a work connection; nil for a work connection.
	yield <-chan struct{}
}

// Caps is what the server announced after login.
func (c *Conn) Caps() imap.CapSet { return c.caps }

// CondStore reports whether the server offers CONDSTORE (RFC 7162): then
// Select asks for it and a SELECT's data carries HIGHESTMODSEQ.
func (c *Conn) CondStore() bool { return c.caps.Has(imap.CapCondStore) }

// Closed closes when the connection is closed (by the server, a
// deadline, or Close).
func (c *Conn) Closed() <-chan struct{} { return c.c.Closed() }

// Hold ties the connection to a slot in the host's connection budget:
// Close calls release, and Yield returns yield (nil for a connection
// that never gives its slot up).
func (c *Conn) Hold(release func(), yield <-chan struct{}) {
	c.release, c.yield = release, yield
}

// Yield closes when the connection is asked to give its slot to a work
// connection (nil: never).
func (c *Conn) Yield() <-chan struct{} { return c.yield }

// Guard bounds one operation: the connection is closed when ctx ends or
// when Touch is not called within the timeout.
type Guard struct {
	c     *Conn
	t     *time.Timer
	stop  func() bool
	fired chan struct{}
}

func (c *Conn) guard(ctx context.Context) *Guard {
	g := &Guard{c: c, fired: make(chan struct{})}
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

// Touch extends the deadline: the operation made progress.
func (g *Guard) Touch() { g.t.Reset(g.c.timeout) }

// done ends the guard; it returns ErrTimeout when the watchdog fired.
func (g *Guard) done(err error) error {
	g.t.Stop()
	g.stop()
	select {
	case <-g.fired:
		if err == nil {
			err = ErrTimeout
		}
		return fmt.Errorf("%w (%v)", ErrTimeout, err)
	default:
		return err
	}
}

// Do runs f under a guard: the connection is closed when ctx ends or f
// makes no progress (Guard.Touch) for the connection's timeout, and the
// error then wraps ErrTimeout.
func (c *Conn) Do(ctx context.Context, f func(g *Guard) error) error {
	g := c.guard(ctx)
	return g.done(f(g))
}

// Abandon ends a FETCH whose response is not read to its end (a failure
// mid-FETCH) and leaves the connection unusable: the network connection
// is closed, so that nothing more is read from the server (not the rest
// of a hostile or dripping literal), and Close will not log out. The
// command is not drained: reading the rest of an abandoned literal races
// with go-imap's reader goroutine. Nor may anything write to the client
// now: a failed write (LOGOUT on the closed connection) makes go-imap
// beta.8 complete the pending FETCH from the writing goroutine, closing
// its channel while the reader goroutine may be sending on it.
func (c *Conn) Abandon() {
	c.mu.Lock()
	c.broken = true
	raw := c.raw
	c.mu.Unlock()
	if raw != nil {
		raw.Close()
	}
}

// Close logs out politely (bounded) and closes the connection, then
// gives the host's slot back (Hold). A nil Conn is a no-op.
func (c *Conn) Close() {
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

// IsNo reports whether err is a tagged NO or BAD answer: the command
// failed, the connection is fine.
func IsNo(err error) bool {
	var e *imap.Error
	return errors.As(err, &e)
}

// Code is the response code of a tagged NO or BAD answer ("" for any
// other error).
func Code(err error) imap.ResponseCode {
	var e *imap.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
