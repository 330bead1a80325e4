package imapsync

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
	"github.com/prometheus/client_golang/prometheus"
)

// The freshness promise (decision 22): a change in any folder is seen
// within the account's poll interval, IDLEd or not. Folders without a live
// IDLE are checked by the poll; an IDLE that has carried no update for a
// poll interval is ended (DONE, NOOP) and its folder checked on the work
// connection (checkFolder), then IDLE starts again. A server whose IDLE
// never carries the new mail those checks find is detected after
// noPushAfter such checks with no update carried by any of its IDLEs in
// between (a check that finds nothing does not count), logged once, and
// its folders are
// polled from then on (no IDLE connections for the account until its
// worker restarts).

// noPushAfter is how many checks must find new mail (or expunges) that
// the folder's IDLE did not carry before the server is taken for one whose
// IDLE never pushes. An update any of the account's IDLEs carries resets
// the count, so a push that only lost a race with a check never adds up; a
// check that finds nothing leaves it as it is.
const noPushAfter = 3

// errNoPush ends the IDLE connections of an account whose server's IDLE
// was found not to push.
var errNoPush = errors.New("imapsync: the server's IDLE carries no updates; its folders are polled")

// freshness is what an account knows of how fresh its folders are. Its
// fields are shared by the account's goroutine, its IDLE connections and
// the metrics collector.
type freshness struct {
	mu sync.Mutex
	// started is when the worker started: the age of a folder never
	// checked counts from it.
	started time.Time
	// folders are the folders of the last LIST (by name).
	folders []string
	// checked is when each folder was last checked against the server
	// (the start of a sync or of a STATUS that found it unchanged).
	checked map[string]time.Time
	// due holds the folders whose IDLE asked for a check.
	due map[string]bool
	// misses counts the checks of IDLEd folders, since an IDLE last
	// carried an update, that found new mail or expunges their IDLE had
	// not carried.
	misses int
	// noPush closes when the server's IDLE is found not to push.
	noPush     chan struct{}
	noPushSeen bool
}

func newFreshness(now time.Time) *freshness {
	return &freshness{started: now, checked: map[string]time.Time{}, due: map[string]bool{}, noPush: make(chan struct{})}
}

// setFolders records the folder list.
func (f *freshness) setFolders(names []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.folders = names
	for n := range f.checked {
		if !slices.Contains(names, n) {
			delete(f.checked, n)
		}
	}
}

// check records that a folder was checked as of at.
func (f *freshness) check(name string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if at.After(f.checked[name]) {
		f.checked[name] = at
	}
}

// age is the age of the least recently checked folder at now (a folder
// never checked counts from the worker's start, as does an account whose
// folders are not listed yet).
func (f *freshness) age(now time.Time) time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	oldest := now
	if len(f.folders) == 0 {
		oldest = f.started
	}
	for _, n := range f.folders {
		at, ok := f.checked[n]
		if !ok {
			at = f.started
		}
		if at.Before(oldest) {
			oldest = at
		}
	}
	return max(now.Sub(oldest), 0)
}

// requestCheck asks the work connection to check an IDLEd folder.
func (f *freshness) requestCheck(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.due[name] = true
}

// takeDue returns and clears the folders whose check was asked for.
func (f *freshness) takeDue() map[string]bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.due
	f.due = map[string]bool{}
	return out
}

// pushed records an update carried by an IDLE.
func (f *freshness) pushed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.misses = 0
}

// missed records a check of an IDLEd folder that found new mail its
// IDLE had not carried; it reports true once, when the count reaches
// noPushAfter.
func (f *freshness) missed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.misses++
	if f.misses < noPushAfter || f.noPushSeen {
		return false
	}
	f.noPushSeen = true
	close(f.noPush)
	return true
}

// noPushFound reports whether the server's IDLE was found not to push.
func (f *freshness) noPushFound() bool {
	select {
	case <-f.noPush:
		return true
	default:
		return false
	}
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// pollInterval is the account's poll interval: its own when it sets one
// (at least a second), else Config.PollInterval.
func (w *account) pollInterval() time.Duration {
	if d := w.a.PollInterval.AsDuration(); w.a.PollInterval != nil && d >= time.Second {
		return d
	}
	return w.s.cfg.PollInterval
}

// folderNames returns the names of w.folders.
func (w *account) folderNames() []string {
	out := make([]string, 0, len(w.folders))
	for n := range w.folders {
		out = append(out, n)
	}
	return out
}

// syncChecked syncs a folder and reports whether the server had new
// mail, expunges or a new UIDVALIDITY for it (flag changes are not
// counted: they say nothing of whether IDLE pushes new mail).
func (w *account) syncChecked(ctx context.Context, f *folder) (changed bool, err error) {
	uidvalidity, uidnext, n := f.st.GetUidvalidity(), f.st.GetSyncedUidnext(), len(f.known)
	loaded := f.known != nil
	if err := w.syncFolder(ctx, f); err != nil {
		return false, err
	}
	return f.st.GetUidvalidity() != uidvalidity || f.st.GetSyncedUidnext() != uidnext || (loaded && len(f.known) != n), nil
}

// checkFolder checks one folder against the server and syncs it when it
// changed: with CONDSTORE a STATUS (UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ,
// MESSAGES) against the cursor is the check, and a folder found unchanged
// is not selected; without CONDSTORE STATUS cannot see flag changes, so
// the folder is synced. The folder selected on the work connection is
// synced too (its SELECT is the check): Dovecot answers STATUS on the
// selected mailbox from the session's view, which does not move until
// the mailbox is synced, so a change there would never be seen. It
// reports whether the folder had new mail, expunges or a new
// UIDVALIDITY. A folder gone meanwhile (STATUS refused) makes the next
// pass re-list.
func (w *account) checkFolder(ctx context.Context, f *folder) (newMail bool, err error) {
	if !w.condstore || w.work.Selected() == f.name {
		return w.syncChecked(ctx, f)
	}
	start := time.Now()
	sd, err := w.work.Status(ctx, f.name, &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true, HighestModSeq: true})
	if err != nil {
		if imapconn.IsNo(err) {
			w.relist = true
			return false, nil
		}
		return false, fmt.Errorf("imapsync: check %s: %w", f.name, err)
	}
	// The server's count includes the messages left on it that the store
	// does not hold (f.absent), as delta's expunge check counts them: a
	// folder with one would otherwise be synced at every check and, IDLEd,
	// count as new mail its IDLE did not carry.
	newMail = sd.UIDValidity != f.st.Uidvalidity || uint32(sd.UIDNext) != f.st.SyncedUidnext ||
		(f.known != nil && sd.NumMessages != nil && int(*sd.NumMessages) != len(f.known)+len(f.absent))
	if !newMail && sd.HighestModSeq == f.st.SyncedHighestmodseq {
		w.fresh.check(f.name, start)
		return false, nil
	}
	if err := w.syncFolder(ctx, f); err != nil {
		return false, err
	}
	return newMail, nil
}

// checkDue checks the folders whose IDLE carried no update for a poll
// interval (dirty: they are to be synced anyway, and the sync is the
// check). One that had new mail counts towards finding a server whose
// IDLE does not push, logged once.
func (w *account) checkDue(ctx context.Context, f *folder, dirty bool) error {
	var newMail bool
	var err error
	if dirty {
		newMail, err = w.syncChecked(ctx, f)
	} else {
		newMail, err = w.checkFolder(ctx, f)
	}
	if err != nil {
		return err
	}
	if newMail && w.fresh.missed() {
		w.log.Warn("the server advertises IDLE but its IDLE carried none of the new mail that checks found; the account's folders are polled instead",
			"checks", noPushAfter, "poll_interval", w.pollInterval().String(), "host", w.a.Host)
		w.s.metrics.noPush.Inc()
	}
	return nil
}

// freshnessCollector exports, per account this replica works, the age of
// its least recently checked folder, and the oldest of them. A parked
// account, or one whose worker stopped working it, is not among them.
type freshnessCollector struct {
	mu       sync.Mutex
	accounts map[string]*freshness
	perAcct  *prometheus.Desc
	oldest   *prometheus.Desc
}

func newFreshnessCollector() *freshnessCollector {
	return &freshnessCollector{
		accounts: map[string]*freshness{},
		perAcct: prometheus.NewDesc("mailbus_imapsync_freshness_seconds",
			"Per account worked by this replica: the age of its least recently checked folder (time since the oldest of its folders' last check against the server). The freshness promise keeps it within the poll interval and a pass; it grows while the account is disconnected or retrying. A parked account, or one this replica stopped working (lease taken, account updated), has none. One series per account.",
			[]string{"account"}, nil),
		oldest: prometheus.NewDesc("mailbus_imapsync_freshness_max_seconds",
			"The largest mailbus_imapsync_freshness_seconds of the accounts this replica works (0 without accounts).", nil, nil),
	}
}

// add registers an account's freshness; the returned func removes it.
func (c *freshnessCollector) add(id string, f *freshness) func() {
	c.mu.Lock()
	c.accounts[id] = f
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.accounts[id] == f {
			delete(c.accounts, id)
		}
		c.mu.Unlock()
	}
}

// Describe implements prometheus.Collector.
func (c *freshnessCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.perAcct
	ch <- c.oldest
}

// Collect implements prometheus.Collector.
func (c *freshnessCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	var oldest time.Duration
	for id, f := range c.accounts {
		age := f.age(now)
		oldest = max(oldest, age)
		ch <- prometheus.MustNewConstMetric(c.perAcct, prometheus.GaugeValue, age.Seconds(), id)
	}
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, oldest.Seconds())
}
