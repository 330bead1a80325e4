package imapsync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/accountrun"
	"github.com/mailbus/mailbus/pkg/backoff"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/mailflags"
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

// dial opens a work connection (with h for what the server sends
// unasked, or nil): it waits for a slot in the host's
// connection budget (reporting that it waits), and IDLE connections of
// any account of the host give theirs up for it.
func (w *account) dial(ctx context.Context, h *imapclient.UnilateralDataHandler) (*imapconn.Conn, error) {
	if w.s.hosts.Waiting(w.a.Host) {
		state := mailbusv1.SyncState_SYNC_STATE_SYNCING
		if w.lastOK.IsZero() && w.a.GetStatus().GetLastSuccessTime() == nil {
			state = mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC
		}
		w.log.Info("waiting for a connection slot", "host", w.a.Host)
		w.report(ctx, state, fmt.Sprintf("waiting for a connection slot to %s (the per-host connection budget is in use)", w.a.Host))
	}
	release, err := w.s.hosts.Acquire(ctx, w.a.Host)
	if err != nil {
		return nil, fmt.Errorf("imapsync: wait for a connection to %s: %w", w.a.Host, err)
	}
	return w.connect(ctx, h, release, nil)
}

// dialIdle opens an IDLE connection, which is optional (STATUS polling
// covers its folder too): only if the host's budget has a free slot now
// (else hostlimit.ErrNoPlace), and c.yield closes when a work connection
// wants the slot.
func (w *account) dialIdle(ctx context.Context, h *imapclient.UnilateralDataHandler) (*imapconn.Conn, error) {
	release, yield, err := w.s.hosts.TryAcquire(ctx, w.a.Host)
	if err != nil {
		return nil, fmt.Errorf("imapsync: IDLE connection to %s: %w", w.a.Host, err)
	}
	return w.connect(ctx, h, release, yield)
}

// connect asks the store for the account's secret and logs in with it: a
// secret read before each login, so that an OAuth 2.0 account logs in
// with an access token the store has renewed ahead of its expiry. If the
// server refuses the token of an OAuth 2.0 account as bad credentials (it
// may have ended it early), the store is asked for a new one (refresh)
// and the login is tried once more, on a new connection (decision 0037);
// a second refusal is a credential failure, which parks the account.
func (w *account) connect(ctx context.Context, h *imapclient.UnilateralDataHandler, release func(), yield <-chan struct{}) (*imapconn.Conn, error) {
	secret, err := w.secret(ctx, false)
	if err != nil {
		release()
		return nil, err
	}
	c, err := w.login(ctx, h, secret)
	var pe *imapconn.PermanentError
	if err != nil && errors.As(err, &pe) && pe.Auth && oauthAccount(w.a) {
		w.log.Info("the server refused the access token; asking the store for a new one and logging in once more", "err", err)
		if secret, err = w.secret(ctx, true); err != nil {
			release()
			return nil, err
		}
		c, err = w.login(ctx, h, secret)
	}
	if err != nil {
		release()
		return nil, err
	}
	c.Hold(release, yield)
	return c, nil
}

// login dials and authenticates with secret.
func (w *account) login(ctx context.Context, h *imapclient.UnilateralDataHandler, secret string) (*imapconn.Conn, error) {
	o := imapconn.DialOptions{Timeout: w.s.cfg.Timeout, RootCAs: w.s.cfg.RootCAs, Secret: secret, Handler: h,
		WarnSkip: func() {
			w.log.Warn("certificate verification is off for this account (insecure_skip_verify)", "host", w.a.Host)
		}}
	if wrap := w.s.cfg.WrapConn; wrap != nil {
		o.Wrap = func(c net.Conn) net.Conn { return wrap(w.a.Id, c) }
	}
	return imapconn.Dial(ctx, w.a, o)
}

// oauthAccount reports whether the store renews the account's access token
// (it has OAuth 2.0 credentials): only then can a refused token be
// replaced by another.
func oauthAccount(a *mailbusv1.Account) bool {
	return a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 && a.GetOauth2() != nil
}

// errReauthorization: the store answered REAUTHORIZATION_NEEDED (the OAuth
// 2.0 refresh token was refused, decision 0036). The store has parked the
// account with its reason; the worker stops without reporting a status of
// its own and without asking again, until the account is updated.
var errReauthorization = errors.New("imapsync: re-authorization needed: the authorization server refused the account's refresh token; the store has parked the account")

// errNoSecret: the store has no password for the account.
var errNoSecret = errors.New("no password stored")

// secret reads the account's password or access token from the store,
// with the lease token (only the current owner may read it); refresh asks
// for a new access token now. An empty one is a permanent error; the
// store's REAUTHORIZATION_NEEDED is errReauthorization; any other failure
// (UNAVAILABLE while the token endpoint fails) is temporary.
func (w *account) secret(ctx context.Context, refresh bool) (string, error) {
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	resp, err := w.st.ingest.GetAccountSecret(sctx, &mailbusv1.GetAccountSecretRequest{AccountId: w.a.Id, LeaseToken: w.token, Refresh: refresh})
	if accountrun.IsReauthorizationNeeded(err) {
		return "", fmt.Errorf("%w: %w", errReauthorization, err)
	}
	if err != nil {
		return "", fmt.Errorf("imapsync: account secret: %w", err)
	}
	if resp.Generation != w.a.Generation {
		// The account was updated since the worker got it: the secret is
		// the new one, the host may be the old one. Never send a new
		// secret to an old host.
		w.staleGeneration.Store(true)
		return "", fmt.Errorf("imapsync: the account changed (generation %d, this worker has %d): not logging in until its worker restarts", resp.Generation, w.a.Generation)
	}
	if resp.Secret == "" {
		// Cleared by an update that moved the account to another server
		// (or never set): never log in without the password the account
		// was given for this server.
		return "", imapconn.Permanent("the account has no password stored (changing its host, port or security clears it): set it with `mailbus account update ACCOUNT --password`", errNoSecret)
	}
	return resp.Secret, nil
}

// session runs one connected session until an error or ctx ends.
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

	// The folder list first: write-backs name folders by id.
	if err := w.syncFolderList(octx); err != nil {
		return err
	}
	if err := w.applyWriteBacks(octx); err != nil {
		return err
	}
	w.prefetchOK = true
	err = w.initialSyncs(octx)
	w.prefetchOK = false
	if err != nil {
		return err
	}
	w.lastOK = time.Now()
	w.progress = nil
	w.report(octx, statusReportedStateOK, "")

	// IDLE: INBOX first, then the account's idle_folders, within the
	// connection budget (one connection is the work connection). None on
	// a server whose IDLE was found not to push (decision 22).
	idled := map[string]bool{}
	ictx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	if w.work.Caps().Has(imap.CapIdle) && !w.fresh.noPushFound() {
		names := append([]string{"INBOX"}, w.a.IdleFolders...)
		for _, n := range names {
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
	}

	pollT := time.NewTicker(w.pollInterval())
	defer pollT.Stop()
	wbT := time.NewTicker(w.s.cfg.WriteBackPoll)
	defer wbT.Stop()
	idleOnWork = idleOnWork && w.work.Caps().Has(imap.CapIdle) && w.folders["INBOX"] != nil
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

func flagStrings(fl []imap.Flag) []string {
	out := make([]string, len(fl))
	for i, f := range fl {
		out[i] = string(f)
	}
	return out
}

func toFlags(fl []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(fl))
	for _, f := range fl {
		if f == `\Recent` {
			continue
		}
		out = append(out, imap.Flag(f))
	}
	return out
}

// normFlags keeps the valid flags of a server's list in canonical form
// (\Recent and anything the store would refuse are dropped).
func normFlags(fl []string) []string {
	out := make([]string, 0, len(fl))
	for _, f := range fl {
		if c, err := mailflags.Canonical(f); err == nil {
			out = append(out, c)
		}
	}
	out, _ = mailflags.Normalize(out)
	return out
}

func sameFlags(a, b []string) bool {
	a, b = normFlags(a), normFlags(b)
	return slices.EqualFunc(a, b, strings.EqualFold)
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
