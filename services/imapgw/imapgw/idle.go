package imapgw

import (
	"sync"
	"time"

	"github.com/mailbus/mailbus/pkg/imapserver"
)

// idleWatch is one IDLE of a session with a mailbox selected (IdleWatch):
// no goroutine waits for its events. The subscription's wake starts one
// that writes what came (poll) and ends; so an IDLEing connection costs
// one goroutine, imapserver's, waiting for the client's DONE.
type idleWatch struct {
	s   *session
	sub *subscription
	w   *imapserver.UpdateWriter

	mu      sync.Mutex
	stopped bool
	err     error // the poll that failed: no more updates
	running bool  // a goroutine of run polls
	again   bool  // woken while it did: it polls once more
	retry   *time.Timer
}

// IdleWatch implements imapserver.SessionIdleWatch: pushes the changes of
// the selected mailbox as the account's stream delivers them.
func (s *session) IdleWatch(w *imapserver.UpdateWriter) (func() error, error) {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if s.sel == nil {
		return func() error { return nil }, nil
	}
	iw := &idleWatch{s: s, sub: s.sel.sub, w: w}
	if err := s.poll(w, true); err != nil {
		return func() error { return nil }, err
	}
	iw.mu.Lock()
	iw.armRetry()
	iw.mu.Unlock()
	iw.sub.setOnWake(iw.wake)
	// Events that came between the poll and setOnWake.
	iw.wake()
	return iw.stop, nil
}

// wake makes a goroutine poll, unless one does already.
func (iw *idleWatch) wake() {
	iw.mu.Lock()
	defer iw.mu.Unlock()
	if iw.stopped || iw.err != nil {
		return
	}
	if iw.running {
		iw.again = true
		return
	}
	iw.running = true
	go iw.run()
}

// run polls until no wake came while it did.
func (iw *idleWatch) run() {
	iw.s.idleMu.Lock()
	defer iw.s.idleMu.Unlock()
	for {
		iw.mu.Lock()
		if iw.stopped || iw.err != nil {
			iw.running = false
			iw.mu.Unlock()
			return
		}
		iw.again = false
		iw.mu.Unlock()
		err := iw.s.poll(iw.w, true)
		iw.mu.Lock()
		if err != nil {
			iw.err = err
		} else {
			iw.armRetry()
		}
		if !iw.again || iw.err != nil {
			iw.running = false
			iw.mu.Unlock()
			return
		}
		iw.mu.Unlock()
	}
}

// armRetry, after a poll whose listing of the mailbox failed, polls again
// after resyncRetry. iw.mu and the session's idleMu are held.
func (iw *idleWatch) armRetry() {
	if iw.s.sel == nil || !iw.s.sel.resyncFailed || iw.stopped {
		return
	}
	if iw.retry != nil {
		iw.retry.Stop()
	}
	iw.retry = time.AfterFunc(resyncRetry, iw.wake)
}

// stop ends the IDLE: once it returns, no goroutine of run writes to the
// client. It returns the error of the poll that failed, if one did.
func (iw *idleWatch) stop() error {
	iw.sub.setOnWake(nil)
	iw.mu.Lock()
	iw.stopped = true
	if iw.retry != nil {
		iw.retry.Stop()
	}
	iw.mu.Unlock()
	// A run that holds idleMu ends before this returns; one that takes
	// it later sees stopped.
	iw.s.idleMu.Lock()
	err := iw.err
	iw.s.idleMu.Unlock()
	return err
}
