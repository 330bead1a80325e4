package imapgw

import (
	"errors"
	"net"
	"sync"
	"time"
)

// splitListener hands the connections of one plaintext listener to two
// imapservers: those from loopback to the one that allows authentication
// without TLS, the others to the one that does not. imapserver decides
// per server (Options.InsecureAuth) whether a connection without TLS may
// authenticate, and announces it in CAPABILITY: LOGINDISABLED and no
// AUTH=PLAIN before STARTTLS on a connection from another host, so that a
// client never sends its token in the clear (RFC 3501 section 6.2.3).
// After STARTTLS the connection is a *tls.Conn and both servers allow it.
type splitListener struct {
	ln           net.Listener
	loop, remote *childListener

	done chan struct{}
	err  error
	once sync.Once
}

// childListener is one side of a splitListener.
type childListener struct {
	parent *splitListener
	conns  chan net.Conn
}

func newSplitListener(ln net.Listener) *splitListener {
	s := &splitListener{ln: ln, done: make(chan struct{})}
	s.loop = &childListener{parent: s, conns: make(chan net.Conn)}
	s.remote = &childListener{parent: s, conns: make(chan net.Conn)}
	go s.run()
	return s
}

func (s *splitListener) run() {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				// A temporary failure (too many open files): retry as
				// net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			s.stop(err)
			return
		}
		delay = 0
		to := s.remote
		if isLoopback(c.RemoteAddr()) {
			to = s.loop
		}
		select {
		case to.conns <- c:
		case <-s.done:
			c.Close()
			return
		}
	}
}

func (s *splitListener) stop(err error) {
	s.once.Do(func() {
		s.err = err
		close(s.done)
	})
}

// Accept implements net.Listener.
func (c *childListener) Accept() (net.Conn, error) {
	select {
	case conn := <-c.conns:
		return conn, nil
	case <-c.parent.done:
		return nil, c.parent.err
	}
}

// Close implements net.Listener: it closes the shared listener.
func (c *childListener) Close() error {
	c.parent.stop(net.ErrClosed)
	return c.parent.ln.Close()
}

// Addr implements net.Listener.
func (c *childListener) Addr() net.Addr { return c.parent.ln.Addr() }
