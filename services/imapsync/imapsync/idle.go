package imapsync

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailbus/mailbus/pkg/backoff"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// workIdleHandler marks INBOX dirty on what the server says while the
// work connection IDLEs on it; other unilateral data is about a folder a
// step has selected, and that step reads what it needs itself.
func (w *account) workIdleHandler() *imapclient.UnilateralDataHandler {
	mark := func() {
		if w.workIdling.Load() {
			w.markDirty("INBOX")
		}
	}
	return &imapclient.UnilateralDataHandler{
		Expunge: func(uint32) { mark() },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				mark()
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			mark()
			m.Collect()
		},
	}
}

// startWorkIdle selects INBOX on the work connection and starts IDLE
// there. When INBOX changed since its last sync (while the connection was
// busy elsewhere) it is marked dirty instead and nil returned, so that the
// loop syncs it first. Without CONDSTORE a flag change in such a gap is
// seen by the next poll, which checks INBOX too in this mode.
func (w *account) startWorkIdle(ctx context.Context) (*imapclient.IdleCommand, error) {
	f := w.folders["INBOX"]
	if f == nil {
		return nil, nil
	}
	start := time.Now()
	sel, err := w.work.Select(ctx, "INBOX")
	if err != nil {
		return nil, fmt.Errorf("imapsync: IDLE on the work connection: %w", err)
	}
	if sel.UIDValidity != f.st.Uidvalidity || uint32(sel.UIDNext) != f.st.SyncedUidnext ||
		(w.condstore && sel.HighestModSeq != f.st.SyncedHighestmodseq) {
		w.markDirty("INBOX")
		return nil, nil
	}
	if w.condstore {
		// UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ as synced: INBOX
		// is checked as of now (decision 22).
		w.fresh.check("INBOX", start)
	}
	cmd, err := w.work.Idle(ctx, func() { w.workIdling.Store(true) })
	if err != nil {
		w.workIdling.Store(false)
		return nil, fmt.Errorf("imapsync: IDLE on the work connection: %w", err)
	}
	return cmd, nil
}

// endWorkIdle ends an IDLE started by startWorkIdle (nil: none).
func (w *account) endWorkIdle(ctx context.Context, cmd *imapclient.IdleCommand) error {
	if cmd == nil {
		return nil
	}
	defer w.workIdling.Store(false)
	if err := w.work.EndIdle(ctx, cmd); err != nil {
		return fmt.Errorf("imapsync: work connection: %w", err)
	}
	return nil
}

// idle keeps an IDLE connection on one folder and marks it dirty on every
// notification and after every (re)connect, so that what changed while it
// was down is caught up. IDLE connections are optional: without a free
// slot in the host's budget, or after giving its slot to a work
// connection, the folder is left to polling and IDLE is tried again a
// poll interval later.
func (w *account) idle(ctx context.Context, name string) {
	bo := backoff.Backoff{Min: w.s.cfg.RetryMin, Max: w.s.cfg.RetryMax}
	octx, stop := graceful(ctx, w.s.cfg.ShutdownGrace)
	defer stop()
	for ctx.Err() == nil {
		err := w.idleOnce(ctx, octx, name, bo.Reset)
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, errNoPush) {
			return // the folder is polled (decision 22)
		}
		var pe *imapconn.PermanentError
		if errors.Is(err, errReauthorization) || errors.As(err, &pe) {
			// The work connection meets the same at its next login and
			// parks the account; until then the folder is polled.
			w.log.Warn("IDLE connection cannot log in; the folder is polled", "folder", name, "err", err)
			return
		}
		var d time.Duration
		if errors.Is(err, hostlimit.ErrNoPlace) || errors.Is(err, errYielded) {
			d = backoff.Jitter(w.s.cfg.PollInterval)
			w.log.Debug("no connection slot for IDLE; the folder is polled", "folder", name, "err", err, "retry_in", d)
		} else {
			d = bo.Next()
			w.log.Warn("IDLE connection lost; reconnecting", "folder", name, "err", err, "in", d)
		}
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

// errYielded ends an IDLE connection that gave its slot in the host's
// budget to a work connection.
var errYielded = errors.New("imapsync: IDLE connection gave its slot to a work connection")

// setIdling records whether name has a live IDLE connection.
func (w *account) setIdling(name string, on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if on {
		w.idling[name] = true
	} else {
		delete(w.idling, name)
	}
}

func (w *account) isIdling(name string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.idling[name]
}

// idleOnce runs one IDLE connection until ctx ends (then it ends IDLE
// and logs out, under octx) or the connection fails.
//
// IDLE is ended and issued again every IdleRestart, with a NOOP round
// trip between (a silent connection fails it), and when it has carried
// no update for a poll interval: then, after DONE and the NOOP, the work
// connection checks the folder (decision 22), so that a change is seen
// within the poll interval also on a server whose IDLE does not push.
func (w *account) idleOnce(ctx, octx context.Context, name string, connected func()) error {
	// inIdle is set while an IDLE command runs: what the server says then
	// is a push; what it says to the NOOP is not.
	var inIdle atomic.Bool
	pushes := make(chan struct{}, 1)
	carried := func() {
		w.markDirty(name)
		if inIdle.Load() {
			w.fresh.pushed()
			kick(pushes)
		}
	}
	h := &imapclient.UnilateralDataHandler{
		Expunge: func(uint32) { carried() },
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				carried()
			}
		},
		Fetch: func(m *imapclient.FetchMessageData) {
			carried()
			m.Collect()
		},
	}
	c, err := w.dialIdle(octx, h)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Examine(octx, name); err != nil {
		return fmt.Errorf("imapsync: IDLE connection: %w", err)
	}
	connected()
	w.setIdling(name, true)
	defer w.setIdling(name, false)
	w.markDirty(name)
	poll := w.pollInterval()
	silence := time.NewTimer(poll)
	defer silence.Stop()
	for {
		cmd, err := c.Idle(octx, func() { inIdle.Store(true) })
		if err != nil {
			return fmt.Errorf("imapsync: IDLE connection: %w", err)
		}
		t := time.NewTimer(w.s.cfg.IdleRestart)
		yielded, silent, noPush := false, false, false
	wait:
		for {
			select {
			case <-ctx.Done():
			case <-t.C:
			case <-c.Closed():
			case <-c.Yield():
				yielded = true
			case <-w.fresh.noPush:
				noPush = true
			case <-silence.C:
				silent = true
			case <-pushes:
				silence.Reset(poll)
				continue wait
			}
			break
		}
		t.Stop()
		err = c.EndIdle(octx, cmd)
		inIdle.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if yielded || noPush {
			// What arrived between the last notification and the
			// polling that takes over is caught by a sync now.
			w.markDirty(name)
			if noPush {
				return errNoPush
			}
			return errYielded
		}
		if err != nil {
			return fmt.Errorf("imapsync: IDLE connection: %w", err)
		}
		// A connection that went silent fails here, within the timeout.
		if err := c.Noop(octx); err != nil {
			return fmt.Errorf("imapsync: IDLE connection: %w", err)
		}
		if silent {
			// No update for a poll interval: the work connection checks
			// the folder (this session's view may lag: a server that
			// does not push may count an update as told that it never
			// sent).
			w.fresh.requestCheck(name)
			kick(w.dirty)
			silence.Reset(poll)
		}
	}
}
