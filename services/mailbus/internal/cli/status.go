package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// statusRefresh is how often status --watch reads the accounts.
const statusRefresh = 500 * time.Millisecond

func (a *app) statusCommand() *cobra.Command {
	var account string
	var watch bool
	c := &cobra.Command{
		Use:   "status [--account N] [--watch]",
		Short: "Show each account's sync state; --watch follows the initial sync with a progress bar",
		Long: `Show each account's sync state: waiting (no fetcher has reported yet),
initial sync, idle (up to date), syncing, retrying (a temporary error), or
parked (a permanent error such as a refused login, with the reason and
what to do).

With --watch the table is redrawn as it changes, with a progress bar for
an initial sync (folders, messages, MB, rate and time left), until Ctrl-C.
With --json each account is printed as a line, and with --watch again
whenever its status changes.`,
		Example: `  mailbus status
  mailbus status --account work --watch
  mailbus status --json | jq -r '.name + " " + .status.state'`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			return a.status(ctx, c, account, watch)
		}),
	}
	c.Flags().StringVar(&account, "account", "", "only this account (name or id)")
	c.Flags().BoolVarP(&watch, "watch", "w", false, "keep showing the status as it changes, until Ctrl-C")
	return c
}

// statusAccounts reads the accounts status shows.
func (a *app) statusAccounts(ctx context.Context, c *client, account string) ([]*mailbusv1.Account, error) {
	if account != "" {
		acct, err := c.account(ctx, account)
		if err != nil {
			return nil, err
		}
		return []*mailbusv1.Account{acct}, nil
	}
	return c.allAccounts(ctx)
}

func (a *app) status(ctx context.Context, c *client, account string, watch bool) error {
	accts, err := a.statusAccounts(ctx, c, account)
	if err != nil {
		return err
	}
	if !watch {
		if a.json {
			for _, acct := range accts {
				if err := printJSON(a.io.Out, acct); err != nil {
					return err
				}
			}
			return nil
		}
		return a.printStatus(a.io.Out, accts, nil)
	}
	rates := map[string]*rateMeter{}
	last := map[string]*mailbusv1.AccountStatus{}
	tty := isTerminal(a.io.Out)
	lines := 0
	lost := ""
	t := time.NewTicker(statusRefresh)
	defer t.Stop()
	for {
		now := time.Now()
		for _, acct := range accts {
			r := rates[acct.Id]
			if r == nil {
				r = &rateMeter{}
				rates[acct.Id] = r
			}
			r.add(now, acct.GetStatus())
		}
		switch {
		case a.json:
			for _, acct := range accts {
				if prev, ok := last[acct.Id]; ok && proto.Equal(prev, acct.GetStatus()) {
					continue
				}
				last[acct.Id] = acct.GetStatus()
				if err := printJSON(a.io.Out, acct); err != nil {
					return err
				}
			}
		case tty:
			var b strings.Builder
			if err := a.printStatus(&b, accts, rates); err != nil {
				return err
			}
			if lost != "" {
				fmt.Fprintln(&b, lost)
			}
			// Long lines wrap: count the terminal rows they take, so that
			// moving the cursor up by that many redraws in place.
			text := b.String()
			if lines > 0 {
				fmt.Fprintf(a.io.Out, "\x1b[%dA\x1b[J", lines)
			}
			fmt.Fprint(a.io.Out, text)
			lines = terminalRows(text, terminalWidth(a.io.Out))
		default:
			// Not a terminal: a line per account whose status changed.
			for _, acct := range accts {
				if prev, ok := last[acct.Id]; ok && proto.Equal(prev, acct.GetStatus()) {
					continue
				}
				last[acct.Id] = acct.GetStatus()
				fmt.Fprintf(a.io.Out, "%s %s: %s\n", time.Now().Format("15:04:05"), acct.Name, statusSummary(acct, rates[acct.Id]))
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		fresh, err := a.statusAccounts(ctx, c, account)
		switch {
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil && !isUnavailable(err):
			return err
		case err != nil:
			// The store is away (a restart?): keep the last status and
			// say so, until it answers again.
			if lost == "" {
				lost = fmt.Sprintf("%s lost the store at %s; retrying (Ctrl-C stops)", time.Now().Format("15:04:05"), a.server)
				if !tty || a.json {
					a.statusNotice(lost)
				}
			}
		default:
			if lost != "" && (!tty || a.json) {
				a.statusNotice(time.Now().Format("15:04:05") + " the store answers again")
			}
			lost = ""
			accts = fresh
		}
	}
}

// statusNotice tells about status --watch itself: on standard error with
// --json, so that the output stays JSON.
func (a *app) statusNotice(s string) {
	if a.json {
		fmt.Fprintln(a.io.Err, s)
		return
	}
	fmt.Fprintln(a.io.Out, s)
}

func isUnavailable(err error) bool {
	return status.Code(err) == codes.Unavailable || status.Code(err) == codes.DeadlineExceeded
}

func (a *app) printStatus(w io.Writer, accts []*mailbusv1.Account, rates map[string]*rateMeter) error {
	if len(accts) == 0 {
		fmt.Fprintln(w, "No accounts yet. Add one with `mailbus account add` (see --help), or try `mailbus demo`.")
		return nil
	}
	t := newTable(w, "ACCOUNT", "PROTOCOL", "STATE", "LAST SYNC", "DETAIL")
	now := time.Now()
	var hints []string
	for _, acct := range accts {
		st := acct.GetStatus()
		t.row(acct.Name, protocolName(acct.Protocol), stateName(st.GetState()), ago(st.GetLastSuccessTime(), now), detail(acct, rates[acct.Id]))
		if h := stateHint(acct); h != "" && !strings.HasPrefix(h, "a temporary error") {
			hints = append(hints, fmt.Sprintf("%s: %s", acct.Name, h))
		}
	}
	if err := t.flush(); err != nil {
		return err
	}
	for _, h := range hints {
		fmt.Fprintln(w, h)
	}
	return nil
}

func detail(acct *mailbusv1.Account, r *rateMeter) string {
	st := acct.GetStatus()
	switch st.GetState() {
	case mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC, mailbusv1.SyncState_SYNC_STATE_SYNCING:
		if p := st.GetProgress(); p != nil {
			return progressBar(p, 20) + " " + progressText(p) + r.String(p)
		}
	case mailbusv1.SyncState_SYNC_STATE_RETRYING, mailbusv1.SyncState_SYNC_STATE_PARKED:
		return truncate(st.GetReason(), 100)
	}
	return ""
}

func statusSummary(acct *mailbusv1.Account, r *rateMeter) string {
	s := stateName(acct.GetStatus().GetState())
	if d := detail(acct, r); d != "" {
		s += " " + d
	}
	return s
}

// progressBar draws a bar of width cells for the messages (or folders)
// done.
func progressBar(p *mailbusv1.SyncProgress, width int) string {
	frac := fraction(p)
	n := int(frac * float64(width))
	if n > width {
		n = width
	}
	return "[" + strings.Repeat("#", n) + strings.Repeat("-", width-n) + "]"
}

func fraction(p *mailbusv1.SyncProgress) float64 {
	switch {
	case p.BytesTotal > 0:
		return float64(p.BytesDone) / float64(p.BytesTotal)
	case p.MessagesTotal > 0:
		return float64(p.MessagesDone) / float64(p.MessagesTotal)
	case p.FoldersTotal > 0:
		return float64(p.FoldersDone) / float64(p.FoldersTotal)
	}
	return 0
}

func progressText(p *mailbusv1.SyncProgress) string {
	var parts []string
	parts = append(parts, fmt.Sprintf("%3.0f%%", 100*fraction(p)))
	if p.FoldersTotal > 0 {
		parts = append(parts, fmt.Sprintf("folders %d/%d", p.FoldersDone, p.FoldersTotal))
	}
	if p.MessagesTotal > 0 {
		parts = append(parts, fmt.Sprintf("messages %d/%d", p.MessagesDone, p.MessagesTotal))
	} else if p.MessagesDone > 0 {
		parts = append(parts, fmt.Sprintf("messages %d", p.MessagesDone))
	}
	if p.BytesTotal > 0 {
		parts = append(parts, fmt.Sprintf("%s/%s", humanBytes(p.BytesDone), humanBytes(p.BytesTotal)))
	} else if p.BytesDone > 0 {
		parts = append(parts, humanBytes(p.BytesDone))
	}
	return strings.Join(parts, " ")
}

// rateMeter estimates the download rate from successive progress reports.
type rateMeter struct {
	rateB float64 // bytes/s, smoothed
	rateM float64 // messages/s, smoothed
	lastT time.Time
	lastB uint64
	lastM uint64
}

func (r *rateMeter) add(now time.Time, st *mailbusv1.AccountStatus) {
	p := st.GetProgress()
	if p == nil {
		*r = rateMeter{}
		return
	}
	if r.lastT.IsZero() || p.BytesDone < r.lastB || p.MessagesDone < r.lastM {
		*r = rateMeter{lastT: now, lastB: p.BytesDone, lastM: p.MessagesDone}
		return
	}
	dt := now.Sub(r.lastT).Seconds()
	if dt <= 0 {
		return
	}
	const alpha = 0.3
	rb := float64(p.BytesDone-r.lastB) / dt
	rm := float64(p.MessagesDone-r.lastM) / dt
	if r.rateB == 0 && r.rateM == 0 {
		r.rateB, r.rateM = rb, rm
	} else {
		r.rateB = alpha*rb + (1-alpha)*r.rateB
		r.rateM = alpha*rm + (1-alpha)*r.rateM
	}
	r.lastT, r.lastB, r.lastM = now, p.BytesDone, p.MessagesDone
}

// String is the rate and the time left, or "" before there is a rate.
func (r *rateMeter) String(p *mailbusv1.SyncProgress) string {
	if r == nil || (r.rateB <= 0 && r.rateM <= 0) {
		return ""
	}
	s := fmt.Sprintf(", %.0f msg/s", r.rateM)
	if r.rateB > 0 {
		s = fmt.Sprintf(", %s/s", humanBytes(uint64(r.rateB)))
	}
	var left time.Duration
	switch {
	case p.BytesTotal > 0 && r.rateB > 0:
		left = time.Duration(float64(p.BytesTotal-min(p.BytesDone, p.BytesTotal)) / r.rateB * float64(time.Second))
	case p.MessagesTotal > 0 && r.rateM > 0:
		left = time.Duration(float64(p.MessagesTotal-min(p.MessagesDone, p.MessagesTotal)) / r.rateM * float64(time.Second))
	default:
		return s
	}
	return s + ", ETA " + left.Round(time.Second).String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func terminalWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return 0
	}
	width, _, err := term.GetSize(int(f.Fd()))
	if err != nil {
		return 0
	}
	return width
}

// terminalRows is the number of terminal rows text takes at width columns
// (0: unknown, one row per line).
func terminalRows(text string, width int) int {
	rows := 0
	for _, l := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := utf8.RuneCountInString(l)
		if width <= 0 || n <= width {
			rows++
			continue
		}
		rows += (n + width - 1) / width
	}
	return rows
}
