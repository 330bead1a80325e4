package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func parseSecurity(s string) (mailbusv1.Security, error) {
	switch strings.ToLower(s) {
	case "tls", "ssl":
		return mailbusv1.Security_SECURITY_TLS, nil
	case "starttls", "stls":
		return mailbusv1.Security_SECURITY_STARTTLS, nil
	case "none", "plain", "plaintext":
		return mailbusv1.Security_SECURITY_NONE, nil
	}
	return 0, usagef("--security %q: want tls, starttls or none", s)
}

func parsePop3Mode(s string) (mailbusv1.Pop3Mode, error) {
	switch strings.ToLower(s) {
	case "keep":
		return mailbusv1.Pop3Mode_POP3_MODE_KEEP, nil
	case "delete":
		return mailbusv1.Pop3Mode_POP3_MODE_DELETE, nil
	}
	return 0, usagef("--pop3-mode %q: want keep or delete", s)
}

// movesSecret reports whether an update points the account at another
// server (host, port or security): the store then clears the stored
// password unless the update carries one (decision 0023).
func movesSecret(acct, upd *mailbusv1.Account, fl *pflag.FlagSet) bool {
	host, port, security := acct.Host, acct.Port, acct.Security
	if fl.Changed("host") {
		host = upd.Host
	}
	if fl.Changed("port") {
		port = upd.Port
	}
	if fl.Changed("security") {
		security = upd.Security
	}
	return !strings.EqualFold(host, acct.Host) || port != acct.Port || security != acct.Security
}

func (a *app) accountUpdateCommand() *cobra.Command {
	var f accountAddFlags
	var askPassword bool
	var oauth oauthFlags // account_oauth.go
	c := &cobra.Command{
		Use:               "update ACCOUNT [flags]",
		ValidArgsFunction: a.completeAccounts,
		Short:             "Change an account's settings or password; a parked account syncs again",
		Long: `Change the settings given as flags; the others stay. --password asks for a
new password (or give --password-file / --password-env). Changing the
host, port or security needs the password again: the store never sends a password to a server it was not
given for, so it is asked for (or read from --password-file or
--password-env). Any update un-parks a parked account (a refused login, a
certificate that did not verify), so that it is tried again at once. The
protocol cannot change: remove the account and add it again.

An OAuth account (added with --oauth) gets a new refresh token with
--reauthorize, which runs the browser flow again (or the device flow with
--oauth-device) for its provider and client id; the client secret is asked
for again with --client-secret-file, as the store never gives it back.
--refresh-token-file hands over one obtained elsewhere.`,
		Example: `  mailbus account update work --password-file ~/.work-pw
  mailbus account update work --password          # asks for it
  mailbus account update old-isp --host pop.example.org --security tls --port 995 --password-file ~/.isp-pw
  mailbus account update work --name office
  mailbus account update alice@gmail.com --reauthorize --client-secret-file ~/.gmail-client-secret
  mailbus account update bob@contoso.com --reauthorize --oauth-device`,
		Args: exactArgs(1, "account name or id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			fl := cmd.Flags()
			upd := &mailbusv1.Account{}
			var paths []string
			set := func(flag, path string) bool {
				if fl.Changed(flag) {
					paths = append(paths, path)
					return true
				}
				return false
			}
			if set("name", "name") {
				if upd.Name = strings.TrimSpace(f.name); upd.Name == "" {
					return usagef("--name is empty")
				}
			}
			if set("host", "host") {
				upd.Host = strings.TrimSpace(f.host)
			}
			if set("port", "port") {
				if f.port == 0 || f.port > 65535 {
					return usagef("--port %d: want 1 to 65535", f.port)
				}
				upd.Port = f.port
			}
			if set("security", "security") {
				s, err := parseSecurity(f.security)
				if err != nil {
					return err
				}
				upd.Security = s
			}
			if set("username", "username") {
				upd.Username = f.username
			}
			if set("insecure-skip-verify", "insecure_skip_verify") {
				upd.InsecureSkipVerify = f.insecureSkipVerify
			}
			if set("pop3-mode", "pop3_mode") {
				m, err := parsePop3Mode(f.pop3Mode)
				if err != nil {
					return err
				}
				upd.Pop3Mode = m
			}
			if set("poll", "poll_interval") {
				if f.poll < time.Second {
					return usagef("--poll %s: want at least 1s", f.poll)
				}
				upd.PollInterval = durationpb.New(f.poll)
			}
			if set("folder-include", "folder_include") {
				upd.FolderInclude = f.include
			}
			if set("folder-exclude", "folder_exclude") {
				upd.FolderExclude = f.exclude
			}
			if f.passwordFile != "" && f.passwordEnv != "" {
				return usagef("give --password-file or --password-env, not both")
			}
			newPassword := askPassword || f.passwordFile != "" || f.passwordEnv != ""
			if newPassword {
				pw, err := a.password(&f, "account "+args[0])
				if err != nil {
					return err
				}
				upd.Secret = pw
				paths = append(paths, "secret")
			}
			if len(paths) == 0 && !oauth.updating() {
				return usagef("nothing to change: give the settings to change as flags (see --help)")
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			acct, err := c.account(ctx, args[0])
			if err != nil {
				return err
			}
			if oauth.updating() || (acct.GetOauth2() != nil && !newPassword) {
				more, err := a.oauthUpdate(ctx, cmd, &oauth, acct, upd, movesSecret(acct, upd, fl))
				if err != nil {
					return err
				}
				paths = append(paths, more...)
			} else if !newPassword && movesSecret(acct, upd, fl) {
				// The store clears the password when the account moves to
				// another server (or stops verifying it) without a new one:
				// ask for it now rather than leave the account parked.
				pw, err := a.password(&f, "account "+acct.Name)
				if err != nil {
					const why = "changing the host, port or security clears the stored password (it is never sent to a server it was not given for), so give it again"
					var ue *usageError
					if errors.As(err, &ue) {
						return usagef("%s: %v", why, err)
					}
					return fmt.Errorf("%s: %w", why, err)
				}
				upd.Secret = pw
				paths = append(paths, "secret")
			}
			upd.Id = acct.Id
			cctx, cancel := c.call(ctx)
			defer cancel()
			resp, err := c.accounts.UpdateAccount(cctx, &mailbusv1.UpdateAccountRequest{Account: upd, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
			if err != nil {
				return fmt.Errorf("update account %s: %w", acct.Name, err)
			}
			if a.json {
				return printJSON(a.io.Out, resp.Account)
			}
			fmt.Fprintf(a.io.Out, "Updated account %s (id %s): %s.\n", resp.Account.Name, resp.Account.Id, updatedWhat(paths))
			fmt.Fprintf(a.io.Out, "Follow it with: mailbus status --account %s --watch\n", resp.Account.Name)
			return nil
		}),
	}
	fl := c.Flags()
	fl.StringVar(&f.name, "name", "", "a new name")
	fl.StringVar(&f.host, "host", "", "the server's host name or address")
	fl.Uint32Var(&f.port, "port", 0, "the server's port")
	fl.StringVar(&f.security, "security", "", "tls, starttls or none")
	fl.StringVar(&f.username, "username", "", "the login name")
	fl.BoolVar(&askPassword, "password", false, "set a new password: asked for, or one line from standard input")
	fl.StringVar(&f.passwordFile, "password-file", "", "set a new password from this file (its first line)")
	fl.StringVar(&f.passwordEnv, "password-env", "", "set a new password from this environment variable")
	fl.StringVar(&f.pop3Mode, "pop3-mode", "", "POP3 only: keep or delete")
	fl.DurationVar(&f.poll, "poll", 0, "how often to check for new mail")
	fl.BoolVar(&f.insecureSkipVerify, "insecure-skip-verify", false, "do not verify the server's certificate")
	fl.StringSliceVar(&f.include, "folder-include", nil, "IMAP only: folders to sync")
	fl.StringSliceVar(&f.exclude, "folder-exclude", nil, "IMAP only: folders to leave out")
	oauth.registerUpdate(fl)
	return c
}
