package imapserver

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/pkg/imapserver/internal/imapwire"
)

func (c *Conn) handleIdle(dec *imapwire.Decoder) error {
	if !dec.ExpectCRLF() {
		return dec.Err()
	}

	if err := c.checkState(imap.ConnStateAuthenticated); err != nil {
		return err
	}

	if err := c.writeContReq("idling"); err != nil {
		return err
	}

	if s, ok := c.session.(SessionIdleWatch); ok {
		return c.idleWatch(s)
	}

	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		defer func() {
			if v := recover(); v != nil {
				c.server.logger().Printf("panic idling: %v\n%s", v, debug.Stack())
				done <- fmt.Errorf("imapserver: panic idling")
			}
		}()
		w := &UpdateWriter{conn: c, allowExpunge: true}
		done <- c.session.Idle(w, stop)
	}()

	c.setReadTimeout(idleReadTimeout)
	c.awaitInput()
	line, isPrefix, err := c.br.ReadLine()
	close(stop)
	if err == io.EOF {
		return nil
	} else if err != nil {
		return err
	} else if isPrefix || string(line) != "DONE" {
		return newClientBugError("Syntax error: expected DONE to end IDLE command")
	}

	return <-done
}

// SessionIdleWatch is a Session whose IDLE needs no goroutine of its own
// while no update comes: the connection's goroutine waits for DONE, and
// the session writes updates from a goroutine it starts when it has some.
// When a Session implements it, IDLE calls IdleWatch instead of Idle.
type SessionIdleWatch interface {
	Session

	// IdleWatch starts an IDLE: until stop is called, the session writes
	// its updates to w as they come. stop ends it; once stop returns,
	// nothing more is written. The error of IdleWatch, or else of stop
	// (the one that ended the updates early, if any), is IDLE's answer,
	// given after the client's DONE.
	IdleWatch(w *UpdateWriter) (stop func() error, err error)
}

// idleWatch is IDLE with a SessionIdleWatch.
func (c *Conn) idleWatch(s SessionIdleWatch) error {
	stop, watchErr := s.IdleWatch(&UpdateWriter{conn: c, allowExpunge: true})
	if stop == nil {
		stop = func() error { return nil }
	}
	c.setReadTimeout(idleReadTimeout)
	c.awaitInput()
	line, isPrefix, err := c.br.ReadLine()
	stopErr := stop()
	if err == io.EOF {
		return nil
	} else if err != nil {
		return err
	} else if isPrefix || string(line) != "DONE" {
		return newClientBugError("Syntax error: expected DONE to end IDLE command")
	}
	if watchErr != nil {
		return watchErr
	}
	return stopErr
}
