package imapsync

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// session runs one connected session until an error or ctx ends: it
// opens the work connection, makes the first pass (folder list,
// write-backs, initial syncs), starts the IDLE connections, then runs
// the session's steps.
func (w *account) session(ctx context.Context, connected func()) error {
	// Operations run under octx, which ends ShutdownGrace after ctx: the
	// step in progress when the service stops may finish, then the
	// connections log out. abort (a refused status report) ends both at
	// once.
	ctx, cancelSession := context.WithCancel(ctx)
	defer cancelSession()
	octx, stop := graceful(ctx, w.s.cfg.ShutdownGrace)
	defer stop()
	octx, cancelOps := context.WithCancel(octx)
	defer cancelOps()
	w.abort = func() { cancelSession(); cancelOps() }
	defer func() { w.abort = nil }()
	// With one connection per account, INBOX is IDLEd on the work
	// connection between steps (decision 19): what an idle account holds,
	// here and on the server, is one connection instead of two.
	idleOnWork := w.s.cfg.Connections == 1
	var handler *imapclient.UnilateralDataHandler
	if idleOnWork {
		handler = w.workIdleHandler()
	}
	var err error
	w.work, err = w.dial(octx, handler)
	if err != nil {
		return err
	}
	defer func() { w.work.Close(); w.work = nil }()
	connected()
	w.s.metrics.connects.WithLabelValues("ok").Inc()
	w.condstore = w.work.CondStore()
	w.folders = nil
	if err := w.firstPass(octx); err != nil {
		return err
	}
	stopIdle := w.startIdle(ctx)
	defer stopIdle()
	idleOnWork = idleOnWork && w.work.Caps().Has(imap.CapIdle) && w.folders["INBOX"] != nil
	return w.steps(ctx, octx, idleOnWork)
}

// firstPass is a session's first step: the folder list (write-backs name
// folders by id), the pending write-backs, then the initial syncs not
// done yet (with a second connection where the budgets allow); it
// reports the account synced.
func (w *account) firstPass(ctx context.Context) error {
	if err := w.syncFolderList(ctx); err != nil {
		return err
	}
	if err := w.applyWriteBacks(ctx); err != nil {
		return err
	}
	w.prefetchOK = true
	err := w.initialSyncs(ctx)
	w.prefetchOK = false
	if err != nil {
		return err
	}
	w.lastOK = time.Now()
	w.progress = nil
	w.report(ctx, statusReportedStateOK, "")
	return nil
}

// startIdle starts the IDLE connections, INBOX first, then the account's
// idle_folders, within the connection budget (one connection is the work
// connection); none on a server whose IDLE was found not to push
// (decision 22). They run until ctx ends or the returned stop is called,
// which waits for them.
func (w *account) startIdle(ctx context.Context) (stop func()) {
	ictx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	stop = func() { cancel(); wg.Wait() }
	if !w.work.Caps().Has(imap.CapIdle) || w.fresh.noPushFound() {
		return stop
	}
	idled := map[string]bool{}
	for _, n := range append([]string{"INBOX"}, w.a.IdleFolders...) {
		if len(idled) >= w.s.cfg.Connections-1 {
			break
		}
		if idled[n] || w.folders[n] == nil {
			continue
		}
		idled[n] = true
		wg.Add(1)
		go func() { defer wg.Done(); w.idle(ictx, n) }()
	}
	return stop
}

// steps runs the session's steps, one at a time, until ctx ends (nil)
// or one fails: a pass of write-backs when a device made a change (or
// every WriteBackPoll), a sync of the folders marked dirty, a poll of the
// others every poll interval, and a full pass when SyncNow asks. With
// idleOnWork, the work connection IDLEs on INBOX between steps.
func (w *account) steps(ctx, octx context.Context, idleOnWork bool) error {
	pollT := time.NewTicker(w.pollInterval())
	defer pollT.Stop()
	wbT := time.NewTicker(w.s.cfg.WriteBackPoll)
	defer wbT.Stop()
	for {
		var idle *imapclient.IdleCommand
		restart := time.NewTimer(w.s.cfg.IdleRestart)
		if idleOnWork {
			var err error
			if idle, err = w.startWorkIdle(octx); err != nil {
				restart.Stop()
				return err
			}
		}
		var step func() error
		var reply chan error // a SyncNow caller's, told the step's result
		select {
		case <-ctx.Done():
			restart.Stop()
			_ = w.endWorkIdle(octx, idle) // then the connection logs out
			return nil
		case <-w.wb:
			step = func() error { return w.applyWriteBacks(octx) }
		case <-wbT.C:
			step = func() error { return w.applyWriteBacks(octx) }
		case <-w.dirty:
			step = func() error { return w.syncDirty(octx) }
		case <-pollT.C:
			step = func() error { return w.poll(octx) }
		case reply = <-w.syncNow:
			step = func() error { return w.syncAll(octx) }
		case <-restart.C:
			// End IDLE every IdleRestart: DONE, then the SELECT that
			// starts it again, both under the deadline, find a silent
			// connection as the IDLE connections' NOOP does.
			step = func() error { return nil }
		case <-w.work.Closed():
			step = func() error { return errors.New("imapsync: the server closed the connection") }
		}
		restart.Stop()
		err := w.endWorkIdle(octx, idle)
		if err == nil {
			err = step()
		}
		if reply != nil {
			reply <- err
		}
		if err != nil {
			return err
		}
		if w.relist {
			if err := w.syncFolderList(octx); err != nil {
				return err
			}
			if err := w.initialSyncs(octx); err != nil {
				return err
			}
		}
		w.lastOK = time.Now()
	}
}

// syncDirty applies pending write-backs, then syncs the dirty folders.
func (w *account) syncDirty(ctx context.Context) error {
	if err := w.applyWriteBacks(ctx); err != nil {
		return err
	}
	// The folders whose IDLE asked for a check (decision 22) after the
	// dirty ones; a dirty one is checked by its sync.
	due := w.fresh.takeDue()
	dirty := w.takeDirty()
	names := slices.Clone(dirty)
	for _, n := range sortedKeys(due) {
		if !slices.Contains(dirty, n) {
			names = append(names, n)
		}
	}
	for _, n := range names {
		f := w.folders[n]
		if f == nil {
			continue
		}
		if err := w.writeBacksBetween(ctx); err != nil {
			return err
		}
		var err error
		if due[n] {
			err = w.checkDue(ctx, f, slices.Contains(dirty, n))
		} else {
			err = w.syncFolder(ctx, f)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// syncAll is a full pass (Service.SyncNow): write-backs, the folder list,
// initial syncs of new folders, then a sync of every folder, IDLEd ones
// included, whatever STATUS says.
func (w *account) syncAll(ctx context.Context) error {
	if err := w.syncFolderList(ctx); err != nil {
		return err
	}
	if err := w.applyWriteBacks(ctx); err != nil {
		return err
	}
	if err := w.initialSyncs(ctx); err != nil {
		return err
	}
	for _, f := range w.ordered() {
		w.markDirty(f.name)
	}
	return w.syncDirty(ctx)
}

// poll re-lists the folders and checks every folder without a live IDLE
// connection (none started for it, or it is down or gave its slot to a
// work connection) with STATUS; without CONDSTORE flag changes are
// invisible to STATUS, so every such folder is synced.
func (w *account) poll(ctx context.Context) error {
	// The folder list first: write-backs name folders by id.
	if err := w.syncFolderList(ctx); err != nil {
		return err
	}
	if err := w.applyWriteBacks(ctx); err != nil {
		return err
	}
	if err := w.initialSyncs(ctx); err != nil {
		return err
	}
	for _, f := range w.ordered() {
		if w.isIdling(f.name) {
			continue
		}
		if err := w.writeBacksBetween(ctx); err != nil {
			return err
		}
		if _, err := w.checkFolder(ctx, f); err != nil {
			return err
		}
	}
	return nil
}
