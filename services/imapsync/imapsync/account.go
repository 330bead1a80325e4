package imapsync

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/accountrun"
	"github.com/mailbus/mailbus/pkg/backoff"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// account syncs one IMAP account. Everything that talks on the work
// connection runs in the account's own goroutine (session), one step at a
// time: write-backs, then folder syncs. IDLE connections only mark folders
// dirty.
//
// The session's loop is the one driver: a step is a pass of write-backs
// (applyWriteBacks) or of folder syncs (syncDirty, poll, syncAll,
// initialSyncs), and a pass of folder syncs lets write-backs due
// meanwhile through between two folders and between two chunks of an
// initial sync (syncFolder). A write-back that needs a folder synced (to
// place a message, or after a UIDVALIDITY change) runs that sync to its
// end without write-backs (syncForWriteBack): the two never nest further.
// The IMAP commands themselves are imapconn's.
type account struct {
	s   *Service
	st  storeClients
	a   *mailbusv1.Account
	log *slog.Logger
	// token is the fencing token of the lease the worker runs under (0
	// without ownership), sent with every store write; staleLease is set
	// when the store refused one as stale (another replica claimed the
	// account).
	token      uint64
	staleLease atomic.Bool
	// staleGeneration is set when the store has a newer generation of the
	// account than the worker (it refused a status report as
	// STALE_GENERATION, or the secret is the new one): the worker stops
	// and waits to be restarted with the new configuration.
	staleGeneration atomic.Bool
	// workIdling is set while the work connection IDLEs on INBOX
	// (Connections == 1): its unilateral data then marks INBOX dirty.
	workIdling atomic.Bool
	// abort ends the running session at once, its step in progress
	// included (no shutdown grace): set by session, called when a status
	// report is refused as stale.
	abort func()

	wb    chan struct{} // write-back wake-ups
	dirty chan struct{} // some folder is dirty
	mu    sync.Mutex
	dirt  map[string]bool
	// idling holds the folders with a live IDLE connection now; poll
	// checks every other folder.
	idling map[string]bool

	// fresh is what the account knows of its folders' freshness
	// (decision 22).
	fresh *freshness
	// unexportFresh takes fresh out of the freshness metrics (idempotent):
	// as the worker ends, and as soon as it parks the account or stops
	// working it (stale lease, newer generation), since nothing is
	// expected to keep such an account fresh.
	unexportFresh func()

	// overLimit holds the upstream folders skipped for a name beyond the
	// mailboxname limits, so that each is logged once.
	overLimit map[string]bool

	// syncNow takes Service.SyncNow's requests (only while a session
	// waits for its next step); the pass's result is sent on the channel.
	syncNow chan chan error

	work *imapconn.Conn
	// prefetchOK allows a second connection during initial syncs (only
	// before the session's IDLE connections start); prefetch is the one
	// running (prefetch.go).
	prefetchOK     bool
	prefetch       *prefetcher
	condstore      bool
	unplacedSynced map[string]bool // folders synced this pass to place targets
	lastWriteBacks time.Time
	folders        map[string]*folder // by name
	relist         bool

	// retryAt holds, by write-back id, when a write-back the server
	// refused for now (RETRY) may be tried again.
	retryAt map[string]time.Time

	lastStatus *mailbusv1.AccountStatus
	lastOK     time.Time
	progress   *mailbusv1.SyncProgress
	// lastProgress is when progress was last reported.
	lastProgress time.Time
}

// folder is a synced mailbox with its cursor and, once loaded, the store's
// upstream identities of its messages (for expunge and flag diffs).
type folder struct {
	name  string
	id    string
	role  mailbusv1.MailboxRole
	st    *mailbusv1.MailboxSyncState
	saved *mailbusv1.MailboxSyncState // what the store has, when known
	known map[uint32]*known           // nil: not loaded
	// recheck holds UIDs whose upstream flags the store did not take: it
	// ignored them while a device's change of the message was in flight,
	// or adopted the message as the copy of such a change. Their flags
	// are read and sent again at the next delta, which a settled
	// write-back asks for (markRecheckDirty). Each maps to the cursor's
	// HIGHESTMODSEQ before its flags were read (0 for all flags): while
	// it waits, the HIGHESTMODSEQ saved in the store's cursor is at most
	// that, so that a new session, which does not have this set, reads
	// them again; and only as far back as the ones still waiting need.
	recheck map[uint32]uint64
	// absent holds UIDs on the server that the store does not hold (too
	// large, or refused by the store): the expunge check counts them.
	absent map[uint32]bool
	// rest is what a paused initial sync has left to fetch, for the part
	// that resumes it (nil: none).
	rest *initialRest
}

func (f *folder) markAbsent(uid uint32) {
	if f.absent == nil {
		f.absent = map[uint32]bool{}
	}
	f.absent[uid] = true
}

type known struct {
	id    string
	flags []string
}

func newAccount(s *Service, st storeClients, a *mailbusv1.Account) *account {
	return &account{
		s: s, st: st, a: a,
		log:   s.log.With("account", a.Id),
		wb:    make(chan struct{}, 1),
		dirty: make(chan struct{}, 1),
		dirt:  map[string]bool{},

		syncNow: make(chan chan error),

		idling:    map[string]bool{},
		overLimit: map[string]bool{},
		fresh:     newFreshness(time.Now()),
	}
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func (w *account) markDirty(name string) {
	w.mu.Lock()
	w.dirt[name] = true
	w.mu.Unlock()
	kick(w.dirty)
}

func (w *account) takeDirty() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for n := range w.dirt {
		out = append(out, n)
	}
	clear(w.dirt)
	sort.Strings(out)
	return out
}

// run syncs the account until ctx ends: sessions, with a jittered backoff
// after a temporary error; a permanent error parks the account until it
// is updated (the supervisor restarts the worker on a new generation).
func (w *account) run(ctx context.Context) {
	defer w.s.register(w)()
	w.unexportFresh = w.s.fresh.add(w.a.Id, w.fresh)
	defer w.unexportFresh()
	defer w.forgetState()
	w.token = ownership.TokenFromContext(ctx)
	if !w.claim(ctx) {
		return
	}
	bo := backoff.Backoff{Min: w.s.cfg.RetryMin, Max: w.s.cfg.RetryMax}
	for {
		connected := false
		err := w.session(ctx, func() { connected = true; bo.Reset() })
		if ownership.IsStaleLease(err) || w.staleLease.Load() {
			w.stopStale(ctx, err)
			return
		}
		if ctx.Err() != nil {
			return
		}
		if w.staleGeneration.Load() {
			w.stopChanged(ctx, err)
			return
		}
		if errors.Is(err, errReauthorization) {
			// The store parked the account with its reason and the
			// command that fixes it: no report of this worker's replaces
			// it, and the store is not asked again until an update.
			w.s.metrics.connects.WithLabelValues("permanent").Inc()
			w.stopFreshness()
			w.log.Error("account needs re-authorization (parked by the store) until it is updated", "err", err)
			<-ctx.Done()
			return
		}
		var pe *imapconn.PermanentError
		if errors.As(err, &pe) {
			w.s.metrics.connects.WithLabelValues("permanent").Inc()
			// Before the report: once the store says PARKED, the account
			// has no freshness series.
			w.stopFreshness()
			// The store refuses the report if the account was updated
			// during the session (a login with the old password in
			// flight): a failure of an older generation never parks a
			// newer one.
			w.report(ctx, mailbusv1.SyncState_SYNC_STATE_PARKED, err.Error())
			if w.staleGeneration.Load() {
				w.stopChanged(ctx, err)
				return
			}
			w.log.Error("account parked until it is updated", "reason", pe.Reason, "err", err)
			<-ctx.Done()
			return
		}
		if !connected {
			w.s.metrics.connects.WithLabelValues("temporary").Inc()
		}
		d := bo.Next()
		w.log.Warn("sync interrupted; retrying", "err", err, "in", d)
		w.report(ctx, mailbusv1.SyncState_SYNC_STATE_RETRYING, err.Error())
		if w.staleLease.Load() {
			w.stopStale(ctx, nil)
			return
		}
		if w.staleGeneration.Load() {
			w.stopChanged(ctx, err)
			return
		}
		if !backoff.Sleep(ctx, d) {
			return
		}
	}
}

// forgetState takes the account out of the accounts gauge as its worker
// ends (the account deleted or updated, or worked by another replica):
// report counts it in the state it last reported.
func (w *account) forgetState() {
	if w.lastStatus != nil {
		w.s.metrics.accounts.WithLabelValues(stateLabel(w.lastStatus.State)).Dec()
	}
}

// report records the account's status when it changed.
func (w *account) report(ctx context.Context, state mailbusv1.SyncState, reason string) {
	st := &mailbusv1.AccountStatus{State: state, Reason: reason, Progress: proto.Clone(w.progressOrEmpty()).(*mailbusv1.SyncProgress)}
	if !w.lastOK.IsZero() {
		st.LastSuccessTime = timestamppb.New(w.lastOK)
	}
	if w.lastStatus != nil && proto.Equal(w.lastStatus, st) {
		return
	}
	if w.lastStatus != nil {
		w.s.metrics.accounts.WithLabelValues(stateLabel(w.lastStatus.State)).Dec()
	}
	w.s.metrics.accounts.WithLabelValues(stateLabel(state)).Inc()
	w.lastStatus = st
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	req := &mailbusv1.ReportAccountStatusRequest{AccountId: w.a.Id, Status: st, LeaseToken: w.token, Generation: w.a.Generation}
	if _, err := w.st.ingest.ReportAccountStatus(rctx, req); err != nil {
		if accountrun.IsStaleGeneration(err) {
			// The account was updated: this session works the old
			// configuration; end it, the supervisor starts the new one.
			w.log.Info("the account was updated; status not recorded", "state", state.String(), "generation", w.a.Generation)
			w.staleGeneration.Store(true)
			if w.abort != nil {
				w.abort()
			}
			return
		}
		w.log.Warn("cannot report account status", "err", err)
		if ownership.IsStaleLease(err) {
			// Another replica claimed the account: stop the session now,
			// not at its next refused write (a session that only polls
			// writes nothing).
			w.staleLease.Store(true)
			if w.abort != nil {
				w.abort()
			}
		}
	}
}

// claim tells the store that this worker's lease works the account now
// (ClaimAccount with its fencing token) before anything touches the
// server, so that the store refuses the late writes of an earlier owner.
// It retries a failing store with backoff and returns false when ctx ends
// or the store refuses the token as stale (the worker has then stopped).
func (w *account) claim(ctx context.Context) bool {
	bo := backoff.Backoff{Min: w.s.cfg.RetryMin, Max: w.s.cfg.RetryMax}
	for {
		cctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
		_, err := w.st.ingest.ClaimAccount(cctx, &mailbusv1.ClaimAccountRequest{AccountId: w.a.Id, LeaseToken: w.token})
		cancel()
		switch {
		case err == nil:
			return true
		case ctx.Err() != nil:
			return false
		case ownership.IsStaleLease(err):
			w.stopStale(ctx, err)
			return false
		}
		d := bo.Next()
		w.log.Warn("cannot claim the account in the store; retrying", "err", err, "in", d)
		if !backoff.Sleep(ctx, d) {
			return false
		}
	}
}

// stopStale stops working an account that another replica has claimed
// (the store refused a write as stale) and waits for ctx. Under ownership
// the lease is gone too: its context ends at the next renewal at the
// latest, and the ownership wrapper waits to take the lease again. If the
// lease is still current, the store's token comes from elsewhere (a
// bucket created anew on a clock behind, another deployment): that is
// logged as an error an operator must act on. Without ownership (token 0)
// the account was worked by replicas with ownership before, and only they
// can work it now.
func (w *account) stopStale(ctx context.Context, err error) {
	w.stopFreshness()
	w.s.metrics.staleLeases.Inc()
	switch l := ownership.FromContext(ctx); {
	case l == nil:
		w.log.Error("the store refuses this process's writes: the account was worked by replicas with ownership (--ownership), and only they can work it now", "err", err)
	case l.Current(ctx):
		w.log.Error("the store refuses the token of this replica's current lease; account not worked", "token", l.Token(), "err", err, "help", ownership.TokenMismatchHelp)
	default:
		w.log.Warn("another replica works the account now; stopping", "err", err)
	}
	<-ctx.Done()
}

// stopChanged stops working an account that was updated since the worker
// got it (a newer generation) and waits for ctx: the supervisor restarts
// the worker with the new configuration at its next look at the accounts.
func (w *account) stopChanged(ctx context.Context, err error) {
	w.stopFreshness()
	w.log.Info("the account was updated; waiting for its worker to restart", "generation", w.a.Generation, "err", err)
	<-ctx.Done()
}

// stopFreshness takes the account out of the freshness metrics
// (decision 22) when its worker stops working it but lives on (parked,
// stale lease, newer generation): its folders are not checked and are not
// expected to be, so its age would only grow and raise
// mailbus_imapsync_freshness_max_seconds.
func (w *account) stopFreshness() {
	if w.unexportFresh != nil {
		w.unexportFresh()
	}
}

func (w *account) progressOrEmpty() *mailbusv1.SyncProgress {
	if w.progress == nil {
		return &mailbusv1.SyncProgress{}
	}
	return w.progress
}

// ordered returns the folders, INBOX first, then by name.
func (w *account) ordered() []*folder {
	out := make([]*folder, 0, len(w.folders))
	for _, f := range w.folders {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].name == "INBOX") != (out[j].name == "INBOX") {
			return out[i].name == "INBOX"
		}
		return out[i].name < out[j].name
	})
	return out
}

func (w *account) folderByID(id string) *folder {
	for _, f := range w.folders {
		if f.id == id {
			return f
		}
	}
	return nil
}

func (w *account) folderByRole(r mailbusv1.MailboxRole) *folder {
	for _, f := range w.ordered() {
		if f.role == r {
			return f
		}
	}
	return nil
}

func isNotFound(err error) bool {
	return status.Code(err) == codes.NotFound
}

// graceful returns a context that ends grace after ctx does.
func graceful(ctx context.Context, grace time.Duration) (context.Context, func()) {
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var t *time.Timer
	var mu sync.Mutex
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		t = time.AfterFunc(grace, cancel)
		mu.Unlock()
	})
	return octx, func() {
		stop()
		mu.Lock()
		if t != nil {
			t.Stop()
		}
		mu.Unlock()
		cancel()
	}
}

// addRecheck puts uid in the recheck set, holding the saved cursor at
// most at modseq (an earlier hold of it is kept).
func (f *folder) addRecheck(uid uint32, modseq uint64) {
	if f.recheck == nil {
		f.recheck = map[uint32]uint64{}
	}
	if held, ok := f.recheck[uid]; ok {
		modseq = min(modseq, held)
	}
	f.recheck[uid] = modseq
}
