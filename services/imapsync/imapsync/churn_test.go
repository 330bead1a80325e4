package imapsync_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// The churn test's knobs.
const (
	// churnSeedEnv replays a run: the seed a failed run logged.
	churnSeedEnv = "MAILBUS_CHURN_SEED"
	// churnDurationEnv sets how long the actors make changes (a Go
	// duration); make bench-churn sets 5m.
	churnDurationEnv = "MAILBUS_CHURN_DURATION"
	// churnDefaultDuration is the churn of make test.
	churnDefaultDuration = 20 * time.Second
	// churnQuiesceBound bounds the wait for convergence after the churn.
	// It is generous: a converging run needs a few passes; a diverged one
	// is recognized sooner, at a fixpoint (churnFixpointPasses).
	churnQuiesceBound = 3 * time.Minute
	// churnFixpointPasses full passes in a row with no pending write-back,
	// no change of the store's state and the same divergence mean the
	// divergence is final: nothing is left that could change either side.
	churnFixpointPasses = 5
	// churnWindow is how many of the newest messages the actors act on:
	// the set stays small while new mail comes in and old mail rests.
	churnWindow = 12
)

// churnFolders are the folders the actors move messages between.
var churnFolders = []string{"INBOX", "Archive", "Work", "Trash"}

// churnFlags are the flags the actors set and clear.
var churnFlags = []string{`\Answered`, `\Flagged`, `\Seen`, "$Important"}

// churnKind is one kind of change by one actor.
type churnKind int

const (
	devFlags churnKind = iota
	devMove
	devDelete
	devAppend
	tpFlags
	tpMove
	tpExpunge
	tpAppend
	tpDeliver
)

// churnKinds names each kind and weighs how often it is drawn.
var churnKinds = []struct {
	name   string
	weight int
}{
	devFlags:  {"device flags", 6},
	devMove:   {"device move", 5},
	devDelete: {"device delete", 2},
	devAppend: {"device append", 1},
	tpFlags:   {"third-party flags", 6},
	tpMove:    {"third-party move", 5},
	tpExpunge: {"third-party expunge", 1},
	tpAppend:  {"third-party append", 1},
	tpDeliver: {"new mail", 2},
}

// TestDovecotChurn: a device (through the store's API, with a device
// token) and a third party (IMAP on Dovecot) change the same few messages
// at random, interleaved: flags, moves, deletes, appends and new mail.
// Once both stop and imapsync has converged (a full pass is triggered
// with SyncNow until nothing is left to do), every message has the same
// folder and flags in the store as on the server, none is doubled or
// lost, and the account's events on JetStream replay to the store's
// state, one event per state.
//
// The random choices come from a seed logged at the start; set
// MAILBUS_CHURN_SEED to replay them (the interleaving with imapsync's own
// timing can differ, so a replay hits a timing-dependent defect often,
// not always). MAILBUS_CHURN_DURATION sets the length of the churn.
func TestDovecotChurn(t *testing.T) {
	if testing.Short() {
		t.Skip("churn runs for a while; not in -short")
	}
	seed, dur := churnParams(t)
	t.Logf("churn seed %d for %v (replay: %s=%d)", seed, dur, churnSeedEnv, seed)
	c := newChurn(t, seed)
	if div := c.converge(); len(div) > 0 {
		t.Fatalf("the initial sync did not converge:\n%s", strings.Join(div, "\n"))
	}
	c.run(dur)
	t.Logf("churn seed %d: %d steps: %s", seed, c.steps, c.outcomes())
	div := slices.Concat(c.converge(), c.checkEvents(), c.checkChangeLog())
	if len(c.serverDoubled) > 0 {
		t.Logf("doubled on the server by two sessions moving them at once, and mirrored in the store: %v", sortedKeys(c.serverDoubled))
	}
	if len(div) > 0 {
		t.Errorf("churn seed %d (replay: %s=%d) diverged:\n%s", seed, churnSeedEnv, seed, strings.Join(div, "\n"))
		c.logHistories(div)
	}
}

// churnParams reads the seed (random unless set) and the duration.
func churnParams(t *testing.T) (uint64, time.Duration) {
	t.Helper()
	seed := rand.Uint64() >> 1
	if v := os.Getenv(churnSeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", churnSeedEnv, v, err)
		}
	}
	dur := churnDefaultDuration
	if v := os.Getenv(churnDurationEnv); v != "" {
		var err error
		if dur, err = time.ParseDuration(v); err != nil {
			t.Fatalf("%s=%q: %v", churnDurationEnv, v, err)
		}
	}
	return seed, dur
}

// churn is the test's state: both actors, the systems they act on, and
// what the test knows of every message it created.
type churn struct {
	t    *testing.T
	ctx  context.Context
	rng  *rand.Rand
	e    *env
	dc   *dovecottest.Server
	sync *syncer
	acct string
	// dev is the device's MailboxService client (a device token).
	dev mailbusv1.MailboxServiceClient
	// tp is the third party's IMAP session on Dovecot.
	tp *imapclient.Client
	// events collects the account's events from JetStream.
	events *consumer

	mailboxIDs map[string]string  // store mailbox id by name
	pool       []string           // Message-IDs of every message created, in order
	mayBeGone  map[string]bool    // Message-IDs that an actor deleted or expunged
	moved      map[string]movedBy // which actors moved each Message-ID
	// serverDoubled holds the Message-IDs the server itself doubled
	// (see compare).
	serverDoubled map[string]bool
	last          string // the last target, which the next step may follow
	nextMsg       int
	steps         int
	start         time.Time
	counts        map[string]int
	history       map[string][]string // by Message-ID: the steps that acted on it
}

// newChurn starts Dovecot with the first messages, the store, imapsync
// and both actors, and waits for the store to list the churn folders.
func newChurn(t *testing.T, seed uint64) *churn {
	// The setup is drawn from a stream of its own: the server's
	// capabilities (CONDSTORE or the fallback that compares every flag;
	// MOVE or COPY and EXPUNGE) and imapsync's connections (decision 19:
	// with one, INBOX is IDLEd on the work connection).
	setup := rand.New(rand.NewPCG(seed, 1))
	hide := [][]string{nil, nil, {"CONDSTORE", "QRESYNC"}, {"MOVE"}}[setup.IntN(4)]
	conns := []int{3, 1}[setup.IntN(2)]
	dc := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}, HideCapabilities: hide})
	e := startStore(t)
	c := &churn{t: t, ctx: ctxLong(t), rng: rand.New(rand.NewPCG(seed, seed^0x6d61696c627573)), e: e, dc: dc,
		mayBeGone: map[string]bool{}, moved: map[string]movedBy{}, serverDoubled: map[string]bool{}, counts: map[string]int{}, history: map[string][]string{}}
	// The first messages, a few per folder, some flagged.
	for i, f := range []string{"INBOX", "INBOX", "INBOX", "Archive", "Archive", "Work", "Work", "Trash"} {
		var fl []string
		if i%3 == 0 {
			fl = []string{`\Seen`}
		}
		if err := dc.Deliver("alice", f, c.newMessage(), fl...); err != nil {
			t.Fatal(err)
		}
	}
	// The poll interval is drawn too: a long one leaves more of the third
	// party's changes unseen while the device acts.
	poll := []time.Duration{time.Second, 5 * time.Second, time.Minute}[c.rng.IntN(3)]
	t.Logf("account poll interval %v; imapsync connections %d; capabilities hidden %v", poll, conns, hide)
	a := e.createAccount(t, dc.IMAPSAddr(), mailbusv1.Security_SECURITY_TLS, "alice", "secret", func(a *mailbusv1.Account) {
		a.PollInterval = durationpb.New(poll)
	})
	c.acct = a.Id
	c.events = e.consumeFrom(t, a.Id, jetstream.DeliverAllPolicy)
	c.sync = startSync(t, e, func(cfg *imapsync.Config) { cfg.RootCAs = dc.CertPool(); cfg.Connections = conns })
	c.dev = mailbusv1.NewMailboxServiceClient(dialStore(t, e.addr, e.deviceToken(t, "churn-device", a.Id)))
	c.tp = dialDovecot(t, dc)
	waitFor(t, "the churn folders in the store", func() bool {
		c.mailboxIDs = map[string]string{}
		resp, err := e.mailboxes.ListMailboxes(c.ctx, &mailbusv1.ListMailboxesRequest{AccountId: a.Id})
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range resp.Mailboxes {
			c.mailboxIDs[m.Name] = m.Id
		}
		for _, f := range churnFolders {
			if c.mailboxIDs[f] == "" {
				return false
			}
		}
		return true
	})
	return c
}

// ctxLong is a context for the whole test (the churn and its quiescing
// outlast waitLong).
func ctxLong(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// deviceToken creates a device token for the accounts.
func (e *env) deviceToken(t testing.TB, name string, accounts ...string) string {
	t.Helper()
	tokens := mailbusv1.NewTokenServiceClient(dialStore(t, e.addr, e.adminToken))
	resp, err := tokens.CreateToken(ctxT(t), &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: name, Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: accounts,
	}})
	if err != nil {
		t.Fatalf("create device token: %v", err)
	}
	return resp.Secret
}

// newMessage returns a new message with its own Message-ID, and adds it
// to the pool.
func (c *churn) newMessage() []byte {
	c.nextMsg++
	id := fmt.Sprintf("churn-%d@example.org", c.nextMsg)
	c.pool = append(c.pool, id)
	return fmt.Appendf(nil, "From: sender@example.org\r\nTo: alice@example.org\r\nSubject: churn %d\r\nMessage-ID: <%s>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n\r\nBody of churn message %d.\r\n", c.nextMsg, id, c.nextMsg)
}

// run makes changes until dur has passed.
func (c *churn) run(dur time.Duration) {
	c.start = time.Now()
	for time.Since(c.start) < dur {
		c.step()
	}
}

// movedBy records which actors moved (or deleted, for the device) a
// message.
type movedBy int

const (
	movedByDevice movedBy = 1 << iota
	movedByThirdParty
	movedByBoth = movedByDevice | movedByThirdParty
)

// churnDraw is everything one step draws, drawn whatever the step turns
// out to do, so that a replay stays on the same sequence of draws.
type churnDraw struct {
	kind   churnKind
	follow bool // act on the last step's message again
	pick   int  // which message of the pool, if not following
	flag   string
	add    bool
	folder string
	pause  time.Duration
}

func (c *churn) draw() churnDraw {
	total := 0
	for _, k := range churnKinds {
		total += k.weight
	}
	n := c.rng.IntN(total)
	var kind churnKind
	for i, k := range churnKinds {
		if n < k.weight {
			kind = churnKind(i)
			break
		}
		n -= k.weight
	}
	d := churnDraw{
		kind: kind, follow: c.rng.IntN(2) == 0, pick: c.rng.IntN(1 << 20),
		flag: churnFlags[c.rng.IntN(len(churnFlags))], add: c.rng.IntN(2) == 0,
		folder: churnFolders[c.rng.IntN(len(churnFolders))],
	}
	// Mostly back to back; sometimes long enough for imapsync to act in
	// between.
	p, q := c.rng.IntN(100), time.Duration(c.rng.IntN(1000))
	switch {
	case p < 50:
	case p < 85:
		d.pause = q * 30 * time.Microsecond // up to 30 ms
	case p < 97:
		d.pause = q * 300 * time.Microsecond // up to 300 ms
	default:
		d.pause = q * 2 * time.Millisecond // up to 2 s
	}
	return d
}

// step draws and makes one change, then pauses.
func (c *churn) step() {
	c.steps++
	d := c.draw()
	target := c.last
	if !d.follow || target == "" {
		window := c.pool[max(0, len(c.pool)-churnWindow):]
		target = window[d.pick%len(window)]
	}
	var outcome string
	switch d.kind {
	case devFlags, devMove, devDelete:
		outcome = c.deviceChange(d, target)
	case devAppend:
		outcome = c.deviceAppend(d)
	case tpFlags, tpMove, tpExpunge:
		outcome = c.thirdPartyChange(d, target)
	case tpAppend, tpDeliver:
		outcome = c.thirdPartyNew(d)
	}
	c.counts[churnKinds[d.kind].name+": "+strings.SplitN(outcome, ":", 2)[0]]++
	if outcome == "ok" {
		switch d.kind {
		case devMove, devDelete:
			c.moved[target] |= movedByDevice
		case tpMove:
			c.moved[target] |= movedByThirdParty
		}
	}
	if d.pause > 0 {
		time.Sleep(d.pause) // pacing the actors, not waiting for anything
	}
}

// record notes a step in the history of a message.
func (c *churn) record(msgID, what string) {
	c.last = msgID
	c.history[msgID] = append(c.history[msgID], fmt.Sprintf("step %d at %v: %s", c.steps, time.Since(c.start).Round(time.Millisecond), what))
}

func (c *churn) outcomes() string {
	keys := make([]string, 0, len(c.counts))
	for k := range c.counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %s: %d", k, c.counts[k])
	}
	return b.String()
}
