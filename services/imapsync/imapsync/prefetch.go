package imapsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// prefetcher fetches the bodies of an initial sync's folders on a second
// connection while the work connection syncs the others (issue 11,
// decision 42): the work connection takes the folders in order (INBOX
// first), the prefetcher takes them from the other end. It only stores
// messages, which ingest makes idempotent by upstream identity: it moves
// no cursor and reads no flags of stored messages. When the work
// connection reaches a folder it waits until the prefetcher is done with
// it, then syncs it as always, and finds the prefetched messages stored
// (and the store's flags read again in full, as after a rebind).
//
// The second connection is optional, like an IDLE connection: it is
// opened only if the host's budget has a free slot and nobody waits for
// one (hostlimit.TryAcquire), only when the account may have more than
// one connection (Config.Connections), and only before the session's
// IDLE connections start. It closes as soon as a work connection of any
// account waits for the host's slot (the yield channel), when a
// write-back is to be applied (at its next batch boundary if the work
// connection waits for it, see take), and at the end of the initial
// syncs. A failure on it only ends the prefetching, except the store's
// STALE_LEASE, which stops the account's session at once (decision 11).
type prefetcher struct {
	w      *account
	cancel context.CancelFunc
	done   chan struct{}
	// abort ends the account's session (account.abort, captured when
	// the prefetcher starts: the session clears it only after stop).
	abort func()
	// stopAtBatch asks the prefetcher to end at its next batch boundary.
	stopAtBatch atomic.Bool

	mu      sync.Mutex
	queue   []prefetchFolder         // not taken yet, in the work connection's order
	claimed map[string]chan struct{} // by folder id: closed when the prefetcher is done with it

	// messages and bytes prefetched, not yet in the account's progress.
	messages, bytes atomic.Int64
}

// prefetchFolder is what the prefetcher needs of a folder: a copy, since
// the work connection's write-backs may change the folder meanwhile.
type prefetchFolder struct {
	id, name string
	// uidvalidity is the cursor's (0: never synced); a folder whose
	// UIDVALIDITY changed is left to the work connection (rebind).
	uidvalidity uint32
}

// prefetchMinMessages is the smallest initial sync (messages in the
// folders to sync, by STATUS) that gets a second connection: one costs a
// login and a session on the server, which pays off only over a longer
// download (the bare client with two connections was about 20% faster
// than with one on 10,000 messages, issue 11).
const prefetchMinMessages = 500

// startPrefetch starts a prefetcher for the folders todo, or returns nil
// when there is not enough to do in parallel or no second connection may
// be opened. It claims the last folder at once, so that the work
// connection never syncs it while the prefetcher's connection is being
// opened.
func (w *account) startPrefetch(ctx context.Context, todo []*folder, messages uint64) *prefetcher {
	if !w.prefetchOK || len(todo) < 2 || messages < prefetchMinMessages || w.s.cfg.Connections < 2 {
		return nil
	}
	p := &prefetcher{w: w, done: make(chan struct{}), claimed: map[string]chan struct{}{}, abort: w.abort}
	for _, f := range todo {
		p.queue = append(p.queue, prefetchFolder{id: f.id, name: f.name, uidvalidity: f.st.GetUidvalidity()})
	}
	first, _ := p.next()
	ctx, p.cancel = context.WithCancel(ctx)
	go p.run(ctx, first)
	return p
}

// take is called by the work connection before it syncs f: it takes f
// from the queue or, if the prefetcher has it, waits until it is done. A
// write-back wake-up meanwhile stops the prefetcher at its next batch
// boundary (decision 6: during an initial sync a write-back waits at most
// a few FETCH batches, not for a whole folder on the other connection);
// the wake-up is then given back, so that writeBacksBetween, at the start
// of syncFolder, applies the change, and the work connection fetches the
// rest of f itself. While it waits, the account's progress goes on
// counting what the prefetcher fetched (Config.ProgressInterval).
func (p *prefetcher) take(ctx context.Context, f *folder) {
	if p == nil {
		return
	}
	p.mu.Lock()
	p.queue = slices.DeleteFunc(p.queue, func(q prefetchFolder) bool { return q.id == f.id })
	ch := p.claimed[f.id]
	p.mu.Unlock()
	if ch == nil {
		return
	}
	w := p.w
	tick := time.NewTicker(w.s.cfg.ProgressInterval)
	defer tick.Stop()
	wb := w.wb
	for {
		select {
		case <-ch:
			if wb == nil {
				kick(w.wb)
			}
			return
		case <-ctx.Done():
			return
		case <-tick.C:
			w.fetched(ctx, 0, 0)
		case <-wb:
			p.stopAtBatch.Store(true)
			w.s.metrics.prefetchYields.Inc()
			wb = nil // given back once the prefetcher stopped
		}
	}
}

// next claims the last folder of the queue.
func (p *prefetcher) next() (prefetchFolder, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return prefetchFolder{}, false
	}
	f := p.queue[len(p.queue)-1]
	p.queue = p.queue[:len(p.queue)-1]
	p.claimed[f.id] = make(chan struct{})
	return f, true
}

func (p *prefetcher) finish(f prefetchFolder) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ch := p.claimed[f.id]; ch != nil {
		close(ch)
		delete(p.claimed, f.id)
	}
}

// stop ends the prefetcher and waits for it (nil-safe, idempotent).
func (p *prefetcher) stop() {
	if p == nil {
		return
	}
	p.cancel()
	<-p.done
}

// progress moves the prefetched messages into the account's progress.
func (p *prefetcher) progress(sp *mailbusv1.SyncProgress) {
	if p == nil || sp == nil {
		return
	}
	sp.MessagesDone += uint64(max(p.messages.Swap(0), 0))
	sp.BytesDone += uint64(max(p.bytes.Swap(0), 0))
}

func (p *prefetcher) run(ctx context.Context, f prefetchFolder) {
	defer close(p.done)
	defer p.cancel()
	w := p.w
	c, err := p.dial(ctx)
	if err != nil {
		p.finish(f)
		w.log.Debug("no second connection for the initial sync", "err", err)
		return
	}
	defer c.Close()
	w.s.metrics.connects.WithLabelValues("ok").Inc()
	for ok := true; ok; f, ok = p.next() {
		if p.stopAtBatch.Load() {
			p.finish(f)
			return
		}
		err := p.folder(ctx, c, f)
		if ownership.IsStaleLease(err) {
			// Another replica works the account now (decisions 11, 15):
			// the whole session stops at once, not only this connection,
			// and before the work connection waiting for f goes on.
			w.staleLease.Store(true)
			if p.abort != nil {
				p.abort()
			}
		}
		p.finish(f)
		switch {
		case err == nil:
			continue
		case ownership.IsStaleLease(err):
			w.log.Info("the store refused the second connection's lease token; stopping the account", "folder", f.name, "err", err)
		case ctx.Err() == nil:
			w.log.Info("prefetching on a second connection ended; the work connection goes on alone", "folder", f.name, "err", err)
		}
		return
	}
}

// dial opens the second connection if the host's budget has a free slot
// now; it is cut when a work connection wants the slot.
func (p *prefetcher) dial(ctx context.Context) (*imapconn.Conn, error) {
	w := p.w
	release, yield, err := w.s.hosts.TryAcquire(ctx, w.a.Host)
	if err != nil {
		return nil, fmt.Errorf("imapsync: second connection to %s: %w", w.a.Host, err)
	}
	go func() {
		select {
		case <-yield:
			p.cancel()
		case <-ctx.Done():
		}
	}()
	return w.connect(ctx, nil, release, yield)
}

// folder fetches into the store the messages of f the store does not
// have, newest first.
func (p *prefetcher) folder(ctx context.Context, c *imapconn.Conn, f prefetchFolder) error {
	w := p.w
	sel, err := c.Examine(ctx, f.name)
	if imapconn.IsNo(err) {
		return nil // gone meanwhile: the work connection decides
	}
	if err != nil {
		return fmt.Errorf("imapsync: prefetch: %w", err)
	}
	if (f.uidvalidity != 0 && sel.UIDValidity != f.uidvalidity) || sel.NumMessages == 0 {
		return nil
	}
	known, err := w.knownUIDs(ctx, f.id, sel.UIDValidity)
	if err != nil {
		return err
	}
	uids, _, err := c.ListUIDs(ctx, f.name, 1, 0, func(u uint32) bool { return known[u] }, w.s.cfg.MaxMessageSize)
	if err != nil {
		return err
	}
	batches := newestFirst(uids, w.s.cfg.FetchBatch)
	ref := mailboxRef{id: f.id, name: f.name, uidvalidity: sel.UIDValidity}
	_, _, err = w.fetchBodies(ctx, c, ref, batches, "initial", nil, func(n int, bytes int64) bool {
		p.messages.Add(int64(n))
		p.bytes.Add(bytes)
		return !p.stopAtBatch.Load()
	})
	if err != nil || p.stopAtBatch.Load() {
		return err
	}
	w.s.metrics.prefetched.Inc()
	return nil
}

// knownUIDs returns the UIDs the store has of a mailbox under uidvalidity.
func (w *account) knownUIDs(ctx context.Context, mailboxID string, uidvalidity uint32) (map[uint32]bool, error) {
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	stream, err := w.st.ingest.ListUpstreamIds(sctx, &mailbusv1.ListUpstreamIdsRequest{AccountId: w.a.Id, MailboxId: mailboxID})
	if err != nil {
		return nil, fmt.Errorf("imapsync: list upstream ids: %w", err)
	}
	known := map[uint32]bool{}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return known, nil
		}
		if err != nil {
			return nil, fmt.Errorf("imapsync: list upstream ids: %w", err)
		}
		for _, m := range resp.Messages {
			if m.GetUpstream().GetUidvalidity() == uidvalidity {
				known[m.GetUpstream().GetUid()] = true
			}
		}
	}
}
