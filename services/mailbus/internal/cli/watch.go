package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// watchRefresh is how often watch without --account looks for new
// accounts.
const watchRefresh = 2 * time.Second

func (a *app) watchCommand() *cobra.Command {
	var account string
	var since uint64
	var noStatus bool
	c := &cobra.Command{
		Use:   "watch [--account N]",
		Short: "Print events live as the store commits them (one line each, or --json)",
		Long: `Print every change as it happens: messages created, updated (flags,
moves) and deleted, mailboxes created, renamed and deleted, account status,
failed write-backs. Each line names the account, the event and its origin
(upstream, or the device that made the change). Without --account every
account is watched, including accounts added later. Ctrl-C stops.

With --since (and --account) the events after that state are replayed
first. --json prints each event as the API's mailbus.v1.Event, one per line,
the same as published on NATS.`,
		Example: `  mailbus watch
  mailbus watch --account work --json
  mailbus watch --account work --since 0 --no-status`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("since") && account == "" {
				return usagef("--since needs --account (states are per account)")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			var from *uint64
			if cmd.Flags().Changed("since") {
				from = &since
			}
			w := newWatcher(a, c, a.io.Out, noStatus)
			return w.run(ctx, account, from)
		}),
	}
	a.accountFlag(c, &account)
	c.Flags().Uint64Var(&since, "since", 0, "replay the events after this state first (needs --account)")
	c.Flags().BoolVar(&noStatus, "no-status", false, "leave out account.status events")
	return c
}

// watcher follows accounts' WatchChanges streams and prints the events.
type watcher struct {
	a          *app
	c          *client
	out        io.Writer
	skipStatus bool
	// quiet leaves out the opening line.
	quiet bool

	mu      sync.Mutex
	names   map[string]string            // account id -> name
	boxes   map[string]map[string]string // account id -> mailbox id -> name
	started map[string]bool
	// startedAll is set after the first round of a watch of every account:
	// accounts found later are watched from their beginning.
	startedAll bool
	// listed is closed after the first round of a watch of every account.
	listed chan struct{}
	// refresh is how often a watch of every account lists the accounts.
	refresh time.Duration
	// added takes accounts to watch from their beginning at once, rather
	// than at the next list (watchAdded); stopped is closed when run ends.
	added   chan *mailbusv1.Account
	stopped chan struct{}
}

func newWatcher(a *app, c *client, out io.Writer, skipStatus bool) *watcher {
	refresh := watchRefresh
	if a.io.watchRefresh > 0 {
		refresh = a.io.watchRefresh
	}
	return &watcher{a: a, c: c, out: out, skipStatus: skipStatus, names: map[string]string{}, boxes: map[string]map[string]string{}, started: map[string]bool{}, listed: make(chan struct{}),
		refresh: refresh, added: make(chan *mailbusv1.Account), stopped: make(chan struct{})}
}

// watchAdded has a running watch of every account follow acct, just
// added, from its beginning now rather than at its next list of the
// accounts (up to watchRefresh later), so that the first events of the
// account's sync print as they happen.
func (w *watcher) watchAdded(ctx context.Context, acct *mailbusv1.Account) {
	select {
	case w.added <- acct:
	case <-w.stopped:
	case <-ctx.Done():
	}
}

// run watches one account (ref) or all; from is the state to replay from
// (nil: from now).
func (w *watcher) run(ctx context.Context, ref string, from *uint64) error {
	defer close(w.stopped)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	start := func(acct *mailbusv1.Account, since *uint64) {
		w.mu.Lock()
		if w.started[acct.Id] {
			w.mu.Unlock()
			return
		}
		w.started[acct.Id] = true
		w.names[acct.Id] = acct.Name
		w.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.follow(ctx, acct, since); err != nil && ctx.Err() == nil {
				select {
				case errc <- err:
				default:
				}
			}
		}()
	}
	if ref != "" {
		acct, err := w.c.account(ctx, ref)
		if err != nil {
			return err
		}
		start(acct, from)
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			return nil
		}
	}
	if !w.a.json && !w.quiet {
		fmt.Fprintln(w.out, "Watching every account for changes (Ctrl-C stops).")
	}
	t := time.NewTicker(w.refresh)
	defer t.Stop()
	for {
		accts, err := w.c.allAccounts(ctx)
		w.mu.Lock()
		later := w.startedAll
		w.mu.Unlock()
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && !later:
			return err
		case err != nil:
			// The store is away (a restart): the watches reconnect, and
			// the list is read again next round.
			accts = nil
		}
		for _, acct := range accts {
			st := acct.State
			if later {
				// An account added while watching: from its beginning.
				st = 0
			}
			start(acct, &st)
		}
		w.mu.Lock()
		if !w.startedAll {
			w.startedAll = true
			close(w.listed)
		}
		w.mu.Unlock()
	wait:
		for {
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
				return nil
			case acct := <-w.added:
				var beginning uint64
				start(acct, &beginning)
			case <-t.C:
				break wait
			}
		}
	}
}

// Reconnect delays of a watch that lost the store.
const (
	reconnectMin = 500 * time.Millisecond
	reconnectMax = 5 * time.Second
)

// follow streams one account's events. Once the stream has caught up, a
// lost store (a restart) is retried from the last state seen, so that no
// event is missed or repeated; an unreachable store at the start is an
// error at once.
func (w *watcher) follow(ctx context.Context, acct *mailbusv1.Account, since *uint64) error {
	st := acct.State
	if since != nil {
		st = *since
	}
	delay := reconnectMin
	lost := false
	for {
		caughtUp := false
		err := w.stream(ctx, acct, &st, func() {
			caughtUp = true
			if lost {
				w.notice(fmt.Sprintf("%s %s: reconnected; watching from state %d", time.Now().Format("15:04:05"), acct.Name, st))
				lost = false
			}
			delay = reconnectMin
		})
		if err == nil || ctx.Err() != nil {
			return nil
		}
		retry := errors.Is(err, errStreamEnded) || status.Code(err) == codes.Unavailable
		if !retry || (!caughtUp && !lost) {
			return err
		}
		if !lost {
			w.notice(fmt.Sprintf("%s %s: lost the store at %s; reconnecting (Ctrl-C stops)", time.Now().Format("15:04:05"), acct.Name, w.a.server))
			lost = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, reconnectMax)
	}
}

// errStreamEnded is a watch the store ended (it stopped).
var errStreamEnded = errors.New("the store ended the watch (is it shutting down?)")

// stream runs one WatchChanges call from *st, advancing *st with every
// event; caughtUp is called at the end of the replay. It returns nil when
// the account is gone.
func (w *watcher) stream(ctx context.Context, acct *mailbusv1.Account, st *uint64, caughtUp func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := w.c.sync.WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: acct.Id, SinceState: *st, SkipStatus: w.skipStatus})
	if err != nil {
		return err
	}
	for {
		item, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errStreamEnded
			}
			if isNotFound(err) {
				w.notice(fmt.Sprintf("%s %s: account removed", time.Now().Format("15:04:05"), acct.Name))
				return nil
			}
			return err
		}
		if item.CaughtUp {
			caughtUp()
		}
		ev := item.GetEvent()
		if ev == nil {
			continue
		}
		if ev.State > *st {
			*st = ev.State
		}
		if w.a.json {
			w.mu.Lock()
			err := printJSON(w.out, ev)
			w.mu.Unlock()
			if err != nil {
				return err
			}
		} else {
			w.printEvent(ctx, ev)
		}
	}
}

// notice tells the user about the watch itself: a line of the output, or
// with --json on standard error, so that the output stays JSON.
func (w *watcher) notice(s string) {
	if w.a.json {
		w.mu.Lock()
		fmt.Fprintln(w.a.io.Err, s)
		w.mu.Unlock()
		return
	}
	w.printLine(s)
}

// printEvent prints an event as one line, its control characters
// escaped: a Subject or From name from any sender, a server's error text
// or an upstream folder name must not move the cursor or retitle the
// operator's terminal.
func (w *watcher) printEvent(ctx context.Context, ev *mailbusv1.Event) {
	w.printLine(printable(w.describe(ctx, ev)))
}

func (w *watcher) printLine(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fmt.Fprintln(w.out, s)
}

// mailboxName names a mailbox of an account, reading the list again for
// an id it does not know.
func (w *watcher) mailboxName(ctx context.Context, accountID, id string) string {
	if id == "" {
		return ""
	}
	w.mu.Lock()
	name, ok := w.boxes[accountID][id]
	w.mu.Unlock()
	if ok {
		return name
	}
	boxes, _, err := w.c.mailboxList(ctx, accountID)
	if err != nil {
		return "mailbox " + id
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]string{}
	for _, b := range boxes {
		m[b.Id] = b.Name
	}
	w.boxes[accountID] = m
	if name, ok := m[id]; ok {
		return name
	}
	return "mailbox " + id
}

// eventMailboxName is the name of the mailbox id as the event names it in
// ref, without a call to the store; for an event written before events
// named their mailboxes (decision 34), as the store lists it.
func (w *watcher) eventMailboxName(ctx context.Context, ev *mailbusv1.Event, ref *mailbusv1.MailboxRef, id string) string {
	if ref.GetId() == id && ref.GetName() != "" {
		return ref.GetName()
	}
	return w.mailboxName(ctx, ev.AccountId, id)
}

// attachmentNames is ": " and the file names of the attachments a
// message.created event lists that are not inline, at most three and a
// count of the rest; "" when it lists none with a name.
func attachmentNames(c *mailbusv1.MessageCreated) string {
	var names []string
	for _, a := range c.GetAttachments() {
		if !a.Inline && a.Filename != "" {
			names = append(names, a.Filename)
		}
	}
	more := max(len(names)-3, 0) + int(c.GetOmittedAttachments())
	if len(names) > 3 {
		names = names[:3]
	}
	if len(names) == 0 {
		return ""
	}
	s := ": " + strings.Join(names, ", ")
	if more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

func (w *watcher) rememberMailbox(accountID string, mb *mailbusv1.Mailbox) {
	if mb == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.boxes[accountID] == nil {
		w.boxes[accountID] = map[string]string{}
	}
	w.boxes[accountID][mb.Id] = mb.Name
}

// describe renders an event as one readable line.
func (w *watcher) describe(ctx context.Context, ev *mailbusv1.Event) string {
	w.mu.Lock()
	acct := w.names[ev.AccountId]
	w.mu.Unlock()
	if ev.AccountName != "" {
		acct = ev.AccountName
	}
	if acct == "" {
		acct = "account " + ev.AccountId
	}
	t := time.Now()
	if ev.Time != nil {
		t = ev.Time.AsTime()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %-16s ", t.Local().Format("15:04:05"), acct, events.Kind(ev))
	switch p := ev.Payload.(type) {
	case *mailbusv1.Event_MessageCreated:
		m := p.MessageCreated.GetMessage()
		fmt.Fprintf(&b, "#%s in %s: %q from %s", m.GetId(), w.eventMailboxName(ctx, ev, ev.Mailbox, m.GetMailboxId()), m.GetEnvelope().GetSubject(), shortFrom(m.GetEnvelope().GetFrom()))
		if m.GetHasAttachments() {
			b.WriteString(" (attachments" + attachmentNames(p.MessageCreated) + ")")
		}
	case *mailbusv1.Event_MessageUpdated:
		u := p.MessageUpdated
		m := u.GetMessage()
		fmt.Fprintf(&b, "#%s", m.GetId())
		if len(u.FlagsAdded) > 0 {
			fmt.Fprintf(&b, " +%s", strings.Join(u.FlagsAdded, " +"))
		}
		if len(u.FlagsRemoved) > 0 {
			fmt.Fprintf(&b, " -%s", strings.Join(u.FlagsRemoved, " -"))
		}
		if u.PreviousMailboxId != "" && u.PreviousMailboxId != m.GetMailboxId() {
			fmt.Fprintf(&b, " moved %s -> %s", w.eventMailboxName(ctx, ev, u.PreviousMailbox, u.PreviousMailboxId), w.eventMailboxName(ctx, ev, ev.Mailbox, m.GetMailboxId()))
		}
		fmt.Fprintf(&b, " %q", truncate(m.GetEnvelope().GetSubject(), 50))
	case *mailbusv1.Event_MessageDeleted:
		fmt.Fprintf(&b, "#%s from %s", p.MessageDeleted.MessageId, w.eventMailboxName(ctx, ev, ev.Mailbox, p.MessageDeleted.MailboxId))
	case *mailbusv1.Event_MailboxCreated:
		w.rememberMailbox(ev.AccountId, p.MailboxCreated.GetMailbox())
		fmt.Fprintf(&b, "%s (id %s)", p.MailboxCreated.GetMailbox().GetName(), p.MailboxCreated.GetMailbox().GetId())
	case *mailbusv1.Event_MailboxUpdated:
		w.rememberMailbox(ev.AccountId, p.MailboxUpdated.GetMailbox())
		if p.MailboxUpdated.PreviousName != "" && p.MailboxUpdated.PreviousName != p.MailboxUpdated.GetMailbox().GetName() {
			fmt.Fprintf(&b, "%s renamed to %s", p.MailboxUpdated.PreviousName, p.MailboxUpdated.GetMailbox().GetName())
		} else {
			fmt.Fprintf(&b, "%s", p.MailboxUpdated.GetMailbox().GetName())
		}
	case *mailbusv1.Event_MailboxDeleted:
		fmt.Fprintf(&b, "%s (id %s)", p.MailboxDeleted.Name, p.MailboxDeleted.MailboxId)
	case *mailbusv1.Event_AccountStatus:
		st := p.AccountStatus.GetStatus()
		b.WriteString(stateName(st.GetState()))
		if pr := st.GetProgress(); pr != nil && st.GetState() == mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC {
			b.WriteString(" " + progressText(pr))
		}
		if st.GetReason() != "" {
			b.WriteString(": " + st.GetReason())
		}
	case *mailbusv1.Event_WritebackFailed:
		// The event comes from the fetcher; the change was the device's.
		f := p.WritebackFailed
		if f.MailboxId != "" || f.MailboxName != "" {
			fmt.Fprintf(&b, "mailbox %q (id %s) of device %s: %s", f.MailboxName, f.MailboxId, f.DeviceId, f.Reason)
		} else {
			fmt.Fprintf(&b, "messages %s of device %s: %s", strings.Join(f.MessageIds, " "), f.DeviceId, f.Reason)
		}
	}
	switch o := ev.GetOrigin(); o.GetKind() {
	case mailbusv1.OriginKind_ORIGIN_KIND_DEVICE:
		fmt.Fprintf(&b, " [device %s]", o.DeviceId)
	case mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM:
		b.WriteString(" [upstream]")
	}
	fmt.Fprintf(&b, " state %d", ev.State)
	return b.String()
}
