package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapgw/imapgw"
	"github.com/mailbus/mailbus/services/mailbus/demo"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// Demo account names.
const (
	demoIMAPAccount = "demo-imap"
	demoPOP3Account = "demo-pop3"
	// demoSyncWait bounds the wait for the demo accounts' first sync
	// before the suggestions are printed anyway.
	demoSyncWait = 2 * time.Minute
)

func (a *app) demoCommand() *cobra.Command {
	var f serveFlags
	var imapListen, pop3Listen string
	var newMailEvery time.Duration
	c := &cobra.Command{
		Use:   "demo",
		Short: "Try mailbus: demo IMAP and POP3 servers, two accounts syncing, live events",
		Long: `Run everything mailbus needs on this machine, with nothing installed
beforehand: the all-in-one server (as 'mailbus serve'), a demo IMAP server
with sample mail in INBOX, Sent, Archive and Drafts, and a demo POP3 server
with a maildrop, both on loopback. It adds one IMAP and one POP3 account
(security none: plaintext, acceptable on loopback only), prints the
commands to try next, and streams the events it sees until Ctrl-C. New
mail arrives in the demo IMAP inbox every minute (--new-mail-every), and
shows up at once through IDLE.

Without --data the demo keeps its data in a temporary directory that is
removed at exit.`,
		Example: `  mailbus demo
  make demo                       # the same, from a checkout
  mailbus demo --listen 127.0.0.1:7500 --imap-listen 127.0.0.1:2143 --pop3-listen 127.0.0.1:2110`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("data") {
				if _, ok := a.env("MAILBUS_DATA"); !ok {
					dir, err := os.MkdirTemp("", "mailbus-demo-")
					if err != nil {
						return err
					}
					defer os.RemoveAll(dir)
					f.data = dir
				}
			}
			cfg, err := a.serverConfig(&f)
			if err != nil {
				return err
			}
			// The demo's webhooks go to receivers on this machine.
			cfg.AllowPrivateWebhooks = true
			if newMailEvery < 0 {
				return usagef("--new-mail-every %s: want 0 (off) or more", newMailEvery)
			}
			return a.demo(ctx, cfg, imapListen, pop3Listen, newMailEvery)
		}),
	}
	a.addServeFlags(c, &f, "warn")
	// --data has no fixed default: a temporary directory unless set.
	dataFlag := c.Flags().Lookup("data")
	dataFlag.Usage = "data directory (env MAILBUS_DATA); default: a temporary one, removed at exit"
	if _, ok := a.env("MAILBUS_DATA"); !ok {
		dataFlag.DefValue = ""
	}
	c.Flags().StringVar(&imapListen, "imap-listen", "127.0.0.1:1143", "address of the demo IMAP server")
	c.Flags().StringVar(&pop3Listen, "pop3-listen", "127.0.0.1:1110", "address of the demo POP3 server")
	c.Flags().StringVar(&f.imapListen, "gateway-listen", imapgw.DefaultListen, "address of mailbus's IMAP gateway, for mail clients (serve's --imap-listen); - turns it off")
	c.Flags().DurationVar(&newMailEvery, "new-mail-every", time.Minute, "deliver a new message to the demo IMAP inbox this often; 0 turns it off")
	return c
}

func (a *app) demo(ctx context.Context, cfg mailbus.Config, imapListen, pop3Listen string, newMailEvery time.Duration) error {
	imapSrv, err := demo.StartIMAP(imapListen)
	if err != nil {
		return fmt.Errorf("%w (choose another address with --imap-listen)", err)
	}
	defer imapSrv.Close()
	popSrv, err := demo.StartPOP3(pop3Listen)
	if err != nil {
		return fmt.Errorf("%w (choose another address with --pop3-listen)", err)
	}
	defer popSrv.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan mailbus.Info, 1)
	cfg.Ready = func(info mailbus.Info) { ready <- info }
	srv, err := mailbus.New(cfg)
	if err != nil {
		return err
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Run(ctx) }()
	var info mailbus.Info
	select {
	case info = <-ready:
	case err := <-srvDone:
		if err == nil {
			err = fmt.Errorf("the server stopped before it served")
		}
		return err
	}
	// From here on, the server stops with the demo.
	defer func() {
		cancel()
		<-srvDone
	}()

	a.server = info.StoreAddr
	// The demo's own server: its admin token.
	a.token, a.tokenFile = "", info.AdminTokenFile
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	// The events go to standard output; with --json only they do (one
	// JSON object a line), and the demo's own lines go to standard error.
	out := &lockedWriter{w: a.io.Out}
	banner := io.Writer(out)
	if a.json {
		banner = &lockedWriter{w: a.io.Err}
	}
	fmt.Fprintf(banner, "mailbus demo: the all-in-one server on %s, a demo IMAP server on %s and a demo POP3 server on %s.\n",
		info.StoreAddr, imapSrv.Addr(), popSrv.Addr())
	fmt.Fprintf(banner, "Web console: %s (sign in with the admin token in %s)\n", info.ConsoleURL, info.AdminTokenFile)

	// Watch every account (new ones from their beginning) before adding
	// the accounts, so that the initial sync's events stream too; each
	// account added is handed to the watch at once.
	w := newWatcher(a, c, out, false)
	w.quiet = true
	watchDone := make(chan error, 1)
	go func() { watchDone <- w.run(ctx, "", nil) }()
	select {
	case <-w.listed:
	case err := <-watchDone:
		return err
	}

	imapAcct, err := a.addDemoAccount(ctx, c, &mailbusv1.Account{
		Name: demoIMAPAccount, Protocol: mailbusv1.Protocol_PROTOCOL_IMAP,
		Host: imapSrv.Addr().IP.String(), Port: uint32(imapSrv.Addr().Port), Security: mailbusv1.Security_SECURITY_NONE,
		Username: demo.IMAPUser, Secret: demo.IMAPPassword, AuthMethod: mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD,
		PollInterval: durationpb.New(15 * time.Second),
	})
	if err != nil {
		return err
	}
	w.watchAdded(ctx, imapAcct)
	popAcct, err := a.addDemoAccount(ctx, c, &mailbusv1.Account{
		Name: demoPOP3Account, Protocol: mailbusv1.Protocol_PROTOCOL_POP3,
		Host: popSrv.Addr().IP.String(), Port: uint32(popSrv.Addr().Port), Security: mailbusv1.Security_SECURITY_NONE,
		Username: demo.POP3User, Secret: demo.POP3Password, AuthMethod: mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD,
		Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_KEEP, PollInterval: durationpb.New(15 * time.Second),
	})
	if err != nil {
		return err
	}
	w.watchAdded(ctx, popAcct)
	fmt.Fprintf(banner, "Added account %s (id %s): IMAP, folders %s, %d messages.\n", imapAcct.Name, imapAcct.Id, strings.Join(demo.IMAPFolders, ", "), len(demo.IMAPMessages()))
	fmt.Fprintf(banner, "Added account %s (id %s): POP3, keep mode, %d messages.\n", popAcct.Name, popAcct.Id, len(demo.POP3Messages()))
	fmt.Fprintln(banner, "Both use security none (plaintext): fine on loopback; use tls or starttls for real accounts.")
	fmt.Fprintln(banner, "Events as they happen:")

	go func() {
		a.waitIdle(ctx, c, []string{imapAcct.Id, popAcct.Id}, demoSyncWait)
		if ctx.Err() != nil {
			return
		}
		fmt.Fprint(banner, a.demoSuggestions(ctx, c, info, imapAcct, popAcct, newMailEvery))
		if newMailEvery > 0 {
			deliverNewMail(ctx, banner, imapSrv, newMailEvery)
		}
	}()

	select {
	case <-ctx.Done():
		return nil
	case err := <-srvDone:
		srvDone <- err
		if err == nil {
			return nil
		}
		return err
	case err := <-watchDone:
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
}

// addDemoAccount adds an account, replacing one of the same name left by
// an earlier demo in the same data directory.
func (a *app) addDemoAccount(ctx context.Context, c *client, acct *mailbusv1.Account) (*mailbusv1.Account, error) {
	if old, err := c.account(ctx, acct.Name); err == nil {
		cctx, cancel := c.call(ctx)
		_, err := c.accounts.DeleteAccount(cctx, &mailbusv1.DeleteAccountRequest{AccountId: old.Id})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("replace the earlier demo account %s: %w", acct.Name, err)
		}
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := c.accounts.CreateAccount(cctx, &mailbusv1.CreateAccountRequest{Account: acct})
	if err != nil {
		return nil, fmt.Errorf("add demo account %s: %w", acct.Name, err)
	}
	return resp.Account, nil
}

// waitIdle waits until every account has finished a sync pass (idle) or
// is parked, or until max.
func (a *app) waitIdle(ctx context.Context, c *client, ids []string, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		done := true
		for _, id := range ids {
			acct, err := c.account(ctx, id)
			if err != nil {
				done = false
				break
			}
			st := acct.GetStatus()
			switch {
			case st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED:
			case st.GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE && st.GetLastSuccessTime() != nil:
			default:
				done = false
			}
		}
		if done {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// demoSuggestions is the "what to try next" text, with real ids.
func (a *app) demoSuggestions(ctx context.Context, c *client, info mailbus.Info, imapAcct, popAcct *mailbusv1.Account, newMailEvery time.Duration) string {
	server := ""
	if info.StoreAddr != DefaultServer {
		server = " --server " + info.StoreAddr
	}
	if !sameFile(info.AdminTokenFile, defaultTokenFile) {
		server += " --token-file " + info.AdminTokenFile
	}
	msgID, otherID := "ID", "ID"
	if mb, err := c.mailbox(ctx, imapAcct, "INBOX"); err == nil {
		if msgs, err := c.listMessages(ctx, mb.Id, 2); err == nil && len(msgs) >= 2 {
			msgID, otherID = msgs[0].Id, msgs[1].Id
		}
	}
	var b strings.Builder
	b.WriteString("\nThe demo accounts are synced. Try these in another terminal:\n\n")
	cmd := func(comment, args string) {
		if comment != "" {
			fmt.Fprintf(&b, "  # %s\n", comment)
		}
		fmt.Fprintf(&b, "  %s %s%s\n", a.io.Program, args, server)
	}
	cmd("every account and its sync state", "status")
	cmd("", "account list")
	cmd("the IMAP account's folders", "mailbox list --account "+imapAcct.Name)
	cmd("the newest mail first", "message list --account "+imapAcct.Name+" --mailbox INBOX")
	cmd("", "message list --account "+popAcct.Name)
	cmd("headers, text and attachments", "message show "+msgID)
	cmd("", "message raw "+msgID)
	if id, part := a.demoAttachment(ctx, c, imapAcct); id != "" {
		cmd("an attachment, decoded (-o FILE saves it)", "message attachment "+id+" "+part)
	}
	cmd("written back to the IMAP server", "flag add --account "+imapAcct.Name+" "+msgID+" flagged")
	cmd("", "flag remove --account "+imapAcct.Name+" "+msgID+" flagged")
	cmd("", "message move "+otherID+" --to Archive")
	cmd("", "mailbox create --account "+imapAcct.Name+" Projects")
	cmd("what changed since state 0, as a device asks", "changes --account "+imapAcct.Name+" --since 0")
	cmd("the same as JSON, one object per line", "message list --account "+imapAcct.Name+" --limit 3 --json")
	b.WriteString("\nLive (Ctrl-C stops them):\n\n")
	cmd("every change as it happens", "watch")
	cmd("", "status --watch")
	if info.NATSURL != "" {
		fmt.Fprintf(&b, "\nBackend consumers on NATS %s need a user of their account:\n"+
			"`%s nats-user create --account %s` with mailbus serve (README, \"NATS users\").\n", info.NATSURL, a.io.Program, imapAcct.Name)
	}
	if newMailEvery > 0 {
		fmt.Fprintf(&b, "\nNew mail arrives in the demo IMAP inbox every %s: imapsync sees it at once (IDLE).\n", newMailEvery)
	}
	if info.IMAPAddr != "" {
		cctx, cancel := c.call(ctx)
		resp, err := c.tokens.CreateToken(cctx, &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
			Name: "demo mail client", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{imapAcct.Id, popAcct.Id}}})
		cancel()
		if err == nil {
			b.WriteString("\nAny mail client reaches both accounts through the IMAP gateway (a device token made now):\n")
			printMailClientSettings(&b, info.IMAPAddr, []string{imapAcct.Name, popAcct.Name}, resp.Secret, false)
		}
	}
	b.WriteString("\nThis terminal keeps streaming the events; Ctrl-C stops the demo.\n\n")
	return b.String()
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// deliverNewMail delivers a new message to the demo IMAP inbox every
// interval until ctx ends.
func deliverNewMail(ctx context.Context, out io.Writer, srv *demo.IMAPServer, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			m := demo.NewMail(n, now)
			if err := srv.Deliver(m); err != nil {
				fmt.Fprintf(out, "demo: could not deliver new mail: %v\n", err)
				continue
			}
			fmt.Fprintf(out, "%s demo IMAP server: new mail in INBOX, %q\n", now.Format("15:04:05"), m.Subject)
		}
	}
}

// demoAttachment finds an attachment in the demo IMAP inbox: a message id
// and a part.
func (a *app) demoAttachment(ctx context.Context, c *client, acct *mailbusv1.Account) (string, string) {
	mb, err := c.mailbox(ctx, acct, "INBOX")
	if err != nil {
		return "", ""
	}
	msgs, err := c.listMessages(ctx, mb.Id, 0)
	if err != nil {
		return "", ""
	}
	for _, m := range msgs {
		if !m.HasAttachments {
			continue
		}
		full, err := c.message(ctx, m.Id)
		if err != nil || len(full.Attachments) == 0 {
			continue
		}
		return m.Id, full.Attachments[0].PartId
	}
	return "", ""
}
