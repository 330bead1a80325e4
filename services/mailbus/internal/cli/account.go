package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func (a *app) accountCommand() *cobra.Command {
	return group("account", "Add, list, show, update and remove upstream accounts",
		`  mailbus account add --name work --protocol imap --host imap.example.com \
      --security tls --username alice --password-file ~/.work-pw
  mailbus account list
  mailbus account show work
  mailbus account update work --password
  mailbus account remove work`,
		a.accountAddCommand(), a.accountListCommand(), a.accountShowCommand(), a.accountUpdateCommand(), a.accountRemoveCommand())
}

type accountAddFlags struct {
	name, protocol, host, security, username string
	port                                     uint32
	passwordFile, passwordEnv                string
	pop3Mode                                 string
	poll                                     time.Duration
	insecureSkipVerify                       bool
	include, exclude                         []string
	discover                                 discoverFlags
	oauth                                    oauthFlags // account_oauth.go
}

func (a *app) accountAddCommand() *cobra.Command {
	var f accountAddFlags
	c := &cobra.Command{
		Use:   "add --email ADDRESS | --name N --protocol imap|pop3 --host H --username U [flags]",
		Short: "Add an IMAP or POP3 account; the store starts syncing it at once",
		Long: `Add an upstream account. The password is read from a file (--password-file),
an environment variable (--password-env), or else asked for (typed without
echo on a terminal, or one line from standard input). It is stored
encrypted and never shown again.

The port defaults to the protocol's: IMAP 993 (tls) or 143 (starttls, none);
POP3 995 (tls) or 110 (starttls, none). --security none (plaintext) is only
used when asked for.

With --email and no --host the server is found from the address: built-in
presets for the large providers (no network), then the domain's autoconfig
file (HTTPS), DNS SRV records and its MX host, looked up by the store.
--dry-run prints the settings and adds nothing.`,
		Example: `  mailbus account add --email alice@fastmail.com --dry-run
  mailbus account add --email alice@example.com --protocol pop3 --password-file ~/.pw
  mailbus account add --email alice@gmail.com --oauth google --client-id ID \
      --client-secret-file ~/.gmail-client-secret     # prints a URL to open in a browser
  mailbus account add --email bob@contoso.com --oauth microsoft --client-id ID --oauth-device
  mailbus account add --name work --protocol imap --host imap.example.com \
      --security tls --username alice@example.com --password-file ~/.work-pw
  MAILPW=secret mailbus account add --name old-isp --protocol pop3 \
      --host pop.example.net --security starttls --username bob --password-env MAILPW \
      --pop3-mode delete --poll 5m
  echo secret | mailbus account add --name local --protocol imap --host 127.0.0.1 \
      --port 1143 --security none --username alice`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			return a.accountAdd(ctx, cmd, &f)
		}),
	}
	fl := c.Flags()
	fl.StringVar(&f.name, "name", "", "a unique name for the account, such as work (required)")
	fl.StringVar(&f.protocol, "protocol", "", "imap or pop3 (required)")
	fl.StringVar(&f.host, "host", "", "the server's host name or address (required)")
	fl.Uint32Var(&f.port, "port", 0, "the server's port (default: the protocol's for --security)")
	fl.StringVar(&f.security, "security", "tls", "tls (implicit TLS), starttls, or none (plaintext)")
	fl.StringVar(&f.username, "username", "", "the login name (required)")
	fl.StringVar(&f.passwordFile, "password-file", "", "read the password from this file (its first line)")
	fl.StringVar(&f.passwordEnv, "password-env", "", "read the password from this environment variable")
	fl.StringVar(&f.pop3Mode, "pop3-mode", "keep", "POP3 only: keep mail on the server, or delete it once stored")
	fl.DurationVar(&f.poll, "poll", 0, "how often to check for new mail (POP3; every IMAP folder is checked at least this often, IDLE only makes it sooner); default 60s")
	fl.BoolVar(&f.insecureSkipVerify, "insecure-skip-verify", false, "do not verify the server's certificate (self-signed servers only)")
	fl.StringSliceVar(&f.include, "folder-include", nil, "IMAP only: folders to sync (LIST patterns, * and %); default all")
	fl.StringSliceVar(&f.exclude, "folder-exclude", nil, "IMAP only: folders to leave out (LIST patterns)")
	addDiscoverFlags(fl, &f.discover)
	f.oauth.registerAdd(fl)
	return c
}

func (a *app) accountAdd(ctx context.Context, cmd *cobra.Command, f *accountAddFlags) error {
	if err := f.oauth.checkProvider(); err != nil {
		return err
	}
	if err := a.applyEmail(ctx, cmd, &f.discover); err != nil {
		return err
	}
	if err := requireFlags(cmd, "name", "protocol", "host", "username"); err != nil {
		return err
	}
	acct := &mailbusv1.Account{
		Name: strings.TrimSpace(f.name), Host: strings.TrimSpace(f.host), Username: f.username,
		InsecureSkipVerify: f.insecureSkipVerify, AuthMethod: mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD,
		FolderInclude: f.include, FolderExclude: f.exclude,
	}
	if acct.Name == "" {
		return usagef("--name is empty")
	}
	switch strings.ToLower(f.protocol) {
	case "imap":
		acct.Protocol = mailbusv1.Protocol_PROTOCOL_IMAP
	case "pop3", "pop":
		acct.Protocol = mailbusv1.Protocol_PROTOCOL_POP3
	default:
		return usagef("--protocol %q: want imap or pop3", f.protocol)
	}
	sec, err := parseSecurity(f.security)
	if err != nil {
		return err
	}
	acct.Security = sec
	acct.Port = f.port
	if !cmd.Flags().Changed("port") {
		acct.Port = defaultPort(acct.Protocol, acct.Security)
	} else if f.port == 0 || f.port > 65535 {
		return usagef("--port %d: want 1 to 65535", f.port)
	}
	if cmd.Flags().Changed("pop3-mode") && acct.Protocol != mailbusv1.Protocol_PROTOCOL_POP3 {
		return usagef("--pop3-mode is for POP3 accounts only")
	}
	if acct.Protocol == mailbusv1.Protocol_PROTOCOL_POP3 {
		mode, err := parsePop3Mode(f.pop3Mode)
		if err != nil {
			return err
		}
		acct.Pop3Mode = mode
		if len(f.include) > 0 || len(f.exclude) > 0 {
			return usagef("--folder-include and --folder-exclude are for IMAP accounts only")
		}
	}
	if cmd.Flags().Changed("poll") {
		if f.poll < time.Second {
			return usagef("--poll %s: want at least 1s", f.poll)
		}
		acct.PollInterval = durationpb.New(f.poll)
	}
	if f.passwordFile != "" && f.passwordEnv != "" {
		return usagef("give --password-file or --password-env, not both")
	}
	if f.discover.dryRun {
		return a.printDryRun(acct, &f.discover)
	}
	oauth, err := f.oauth.addPlan(cmd, acct.Username)
	if err != nil {
		return err
	}
	if oauth == nil {
		if acct.Secret, err = a.password(f, f.username+"@"+acct.Host); err != nil {
			return err
		}
	}

	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	if oauth != nil {
		if err := a.oauthAdd(ctx, c, oauth, acct); err != nil {
			return err
		}
	}
	cctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := c.accounts.CreateAccount(cctx, &mailbusv1.CreateAccountRequest{Account: acct})
	if err != nil {
		return fmt.Errorf("add account %s: %w", acct.Name, err)
	}
	if a.json {
		return printJSON(a.io.Out, resp.Account)
	}
	got := resp.Account
	fmt.Fprintf(a.io.Out, "Added account %s (id %s): %s %s@%s:%d, security %s.\n",
		got.Name, got.Id, protocolName(got.Protocol), got.Username, got.Host, got.Port, securityName(got.Security))
	fmt.Fprintf(a.io.Out, "It syncs in the background; follow it with: mailbus status --account %s --watch\n", got.Name)
	return nil
}

func defaultPort(p mailbusv1.Protocol, s mailbusv1.Security) uint32 {
	tls := s == mailbusv1.Security_SECURITY_TLS
	switch {
	case p == mailbusv1.Protocol_PROTOCOL_IMAP && tls:
		return 993
	case p == mailbusv1.Protocol_PROTOCOL_IMAP:
		return 143
	case tls:
		return 995
	}
	return 110
}

// password reads the account password from a file, a variable, or the
// user.
func (a *app) password(f *accountAddFlags, label string) (string, error) {
	switch {
	case f.passwordFile != "":
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return "", usagef("--password-file: %v", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		pw = strings.TrimRight(pw, "\r")
		if pw == "" {
			return "", usagef("--password-file %s is empty", f.passwordFile)
		}
		return pw, nil
	case f.passwordEnv != "":
		pw, ok := a.env(f.passwordEnv)
		if !ok || pw == "" {
			return "", usagef("--password-env %s: the variable is not set or empty", f.passwordEnv)
		}
		return pw, nil
	}
	if file, ok := a.io.In.(*os.File); ok && term.IsTerminal(int(file.Fd())) {
		fmt.Fprintf(a.io.Err, "Password for %s: ", label)
		b, err := term.ReadPassword(int(file.Fd()))
		fmt.Fprintln(a.io.Err)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		if len(b) == 0 {
			return "", usagef("no password typed")
		}
		return string(b), nil
	}
	if a.io.In == nil {
		return "", usagef("no password: give --password-file or --password-env")
	}
	line, err := bufio.NewReader(a.io.In).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		_ = err
		return "", usagef("no password: give --password-file or --password-env, or type it at the prompt (standard input is not a terminal and gave none)")
	}
	return line, nil
}

func (a *app) accountListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the accounts with their sync state",
		Example: "  mailbus account list\n  mailbus account list --json | jq -r .name",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			accts, err := c.allAccounts(ctx)
			if err != nil {
				return fmt.Errorf("list accounts: %w", err)
			}
			if a.json {
				for _, acct := range accts {
					if err := printJSON(a.io.Out, acct); err != nil {
						return err
					}
				}
				return nil
			}
			if len(accts) == 0 {
				fmt.Fprintln(a.io.Out, "No accounts yet. Add one with `mailbus account add` (see --help), or try `mailbus demo`.")
				return nil
			}
			t := newTable(a.io.Out, "ID", "NAME", "PROTOCOL", "SERVER", "USERNAME", "STATE", "LAST SYNC")
			now := time.Now()
			for _, acct := range accts {
				t.row(acct.Id, printable(acct.Name), protocolName(acct.Protocol), fmt.Sprintf("%s:%d (%s)", printable(acct.Host), acct.Port, securityName(acct.Security)),
					printable(acct.Username), stateName(acct.GetStatus().GetState()), ago(acct.GetStatus().GetLastSuccessTime(), now))
			}
			return t.flush()
		}),
	}
}

func (a *app) accountShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "show ACCOUNT",
		ValidArgsFunction: a.completeAccounts,
		Short:             "Show one account (by name or id) with its status",
		Example:           "  mailbus account show work\n  mailbus account show 1 --json",
		Args:              exactArgs(1, "account name or id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			acct, err := c.account(ctx, args[0])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.io.Out, acct)
			}
			a.printAccount(acct)
			return nil
		}),
	}
}

func (a *app) printAccount(acct *mailbusv1.Account) {
	w := a.io.Out
	st := acct.GetStatus()
	fmt.Fprintf(w, "Account %s (id %s)\n", printable(acct.Name), acct.Id)
	fmt.Fprintf(w, "  protocol:   %s\n", protocolName(acct.Protocol))
	fmt.Fprintf(w, "  server:     %s:%d, security %s", printable(acct.Host), acct.Port, securityName(acct.Security))
	if acct.InsecureSkipVerify {
		fmt.Fprint(w, " (certificate not verified)")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  username:   %s\n", printable(acct.Username))
	printOAuth(w, acct)
	if acct.Protocol == mailbusv1.Protocol_PROTOCOL_POP3 {
		mode := "keep"
		if acct.Pop3Mode == mailbusv1.Pop3Mode_POP3_MODE_DELETE {
			mode = "delete"
		}
		fmt.Fprintf(w, "  pop3 mode:  %s\n", mode)
	}
	if acct.PollInterval != nil {
		fmt.Fprintf(w, "  poll:       %s\n", acct.PollInterval.AsDuration())
	}
	if len(acct.FolderInclude) > 0 {
		fmt.Fprintf(w, "  folders:    %s\n", strings.Join(acct.FolderInclude, ", "))
	}
	if len(acct.FolderExclude) > 0 {
		fmt.Fprintf(w, "  excluded:   %s\n", strings.Join(acct.FolderExclude, ", "))
	}
	fmt.Fprintf(w, "  state:      %s\n", stateName(st.GetState()))
	if st.GetReason() != "" {
		fmt.Fprintf(w, "  reason:     %s\n", printable(st.GetReason())) // a server's error text
	}
	if hint := stateHint(acct); hint != "" {
		fmt.Fprintf(w, "  what to do: %s\n", hint)
	}
	if p := st.GetProgress(); p != nil && st.GetState() == mailbusv1.SyncState_SYNC_STATE_INITIAL_SYNC {
		fmt.Fprintf(w, "  progress:   %s\n", progressText(p))
	}
	fmt.Fprintf(w, "  last sync:  %s\n", ago(st.GetLastSuccessTime(), time.Now()))
	fmt.Fprintf(w, "  state id:   %d (for `mailbus changes --since`)\n", acct.State)
	fmt.Fprintf(w, "  created:    %s\n", formatTime(acct.CreateTime))
}

// stateHint says what to do about a parked or retrying account.
func stateHint(acct *mailbusv1.Account) string {
	st := acct.GetStatus()
	switch st.GetState() {
	case mailbusv1.SyncState_SYNC_STATE_PARKED:
		if h := reauthHint(acct); h != "" {
			return h
		}
		r := strings.ToLower(st.GetReason())
		switch {
		case strings.Contains(r, "certificate") || strings.Contains(r, "x509"):
			return fmt.Sprintf("the server's certificate did not verify: fix the host name (mailbus account update %s --host H), or for a self-signed server `mailbus account update %s --insecure-skip-verify`", acct.Name, acct.Name)
		case (strings.Contains(r, "authenticat") || strings.Contains(r, "login") || strings.Contains(r, "credential") || strings.Contains(r, "[auth]")) && acct.GetOauth2() != nil:
			return fmt.Sprintf("the mail server refused the login with a fresh OAuth access token: check the username (the mailbox's address), that the scopes grant IMAP or POP3 and that IMAP or POP3 is enabled for the mailbox, then authorize again with `mailbus account update %s --reauthorize --client-secret-file FILE`", acct.Name)
		case strings.Contains(r, "authenticat") || strings.Contains(r, "login") || strings.Contains(r, "password") || strings.Contains(r, "credential") || strings.Contains(r, "[auth]"):
			return fmt.Sprintf("the server refused the login: check the username and set the right password with `mailbus account update %s --password`", acct.Name)
		}
		return fmt.Sprintf("the account is parked until it is changed: fix the cause with `mailbus account update %s` (any update tries again)", acct.Name)
	case mailbusv1.SyncState_SYNC_STATE_RETRYING:
		r := strings.ToLower(st.GetReason())
		for _, cause := range []string{"connection refused", "no such host", "i/o timeout", "network is unreachable", "no route to host"} {
			if strings.Contains(r, cause) {
				return "the server cannot be reached: check the host and port (mailbus account show " + acct.Name + "); mailbus retries on its own"
			}
		}
		return "a temporary error; mailbus retries on its own"
	case mailbusv1.SyncState_SYNC_STATE_UNSPECIFIED:
		return "no fetcher has reported yet: is `mailbus serve` (or the imapsync / pop3fetcher service) running?"
	}
	return ""
}

func (a *app) accountRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:               "remove ACCOUNT",
		ValidArgsFunction: a.completeAccounts,
		Short:             "Remove an account and its mail from the store (the server's mail is untouched)",
		Example: `  mailbus account remove work
  mailbus account remove 3`,
		Aliases: []string{"rm", "delete"},
		Args:    exactArgs(1, "account name or id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			acct, err := c.account(ctx, args[0])
			if err != nil {
				return err
			}
			cctx, cancel := c.call(ctx)
			defer cancel()
			if _, err := c.accounts.DeleteAccount(cctx, &mailbusv1.DeleteAccountRequest{AccountId: acct.Id}); err != nil {
				return fmt.Errorf("remove account %s: %w", acct.Name, err)
			}
			if a.json {
				return printJSON(a.io.Out, acct)
			}
			fmt.Fprintf(a.io.Out, "Removed account %s (id %s) and its mail from the store; the mail on %s is untouched.\n", acct.Name, acct.Id, acct.Host)
			return nil
		}),
	}
}
