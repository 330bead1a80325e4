package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapgw/imapgw"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

func (a *app) tokenCommand() *cobra.Command {
	return group("token", "Create, list and revoke API tokens (admin token needed)",
		`  mailbus token create --name phone --account work
  mailbus token create --name archiver --account work --account 2 --read-only --expires 30d
  mailbus token list
  mailbus token revoke 3f2a9c0d1b7e4a61
  mailbus token rotate-admin`,
		a.tokenCreateCommand(), a.tokenListCommand(), a.tokenRevokeCommand(), a.tokenRotateAdminCommand())
}

func (a *app) tokenCreateCommand() *cobra.Command {
	var (
		name, role, expires string
		imapAddr            string
		accounts            []string
		readOnly            bool
	)
	c := &cobra.Command{
		Use:   "create --name N (--account A ... [--read-only] | --role admin) [--expires 30d]",
		Short: "Make an API token and print it (once: the store keeps only a hash)",
		Long: `Make an API token. A device token (the default role) reads, and unless
--read-only changes, only the accounts named with --account (by name or id);
every other account is invisible to it. An admin token manages accounts and
tokens. Service tokens, the fetchers' credential and the only one that reads
upstream passwords, are not made here: the store makes one in the file given
with --service-token-file, which the fetchers read with --token-file.

With --expires the token stops working after that long (as if revoked then;
open watches end within seconds): 90m, 12h, 30d or 2w.

The token is printed once. Send it as the gRPC metadata
"authorization: Bearer <token>" (grpcurl -H), or give it to mailbus with
--token, MAILBUS_TOKEN or --token-file.`,
		Example: `  mailbus token create --name phone --account work
  mailbus token create --name crm --account work --account sales --read-only
  mailbus token create --name laptop --role admin --expires 30d`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "name"); err != nil {
				return err
			}
			t := &mailbusv1.Token{Name: name, ReadOnly: readOnly}
			switch role {
			case "device":
				t.Role = mailbusv1.TokenRole_TOKEN_ROLE_DEVICE
				if len(accounts) == 0 {
					return usagef("a device token needs --account (one or more); or --role admin or service")
				}
			case "admin":
				t.Role = mailbusv1.TokenRole_TOKEN_ROLE_ADMIN
				if len(accounts) > 0 || readOnly {
					return usagef("--account and --read-only are for device tokens; admin tokens reach every account")
				}
			case "service":
				return usagef("service tokens are not made through the API (an admin token would reach every upstream password): " +
					"start the store with --service-token-file FILE (it creates the file with a new token) and give the fetchers --token-file FILE")
			default:
				return usagef("--role %q: want device or admin", role)
			}
			if cmd.Flags().Changed("expires") {
				d, err := parseExpiry(expires)
				if err != nil {
					return err
				}
				t.ExpireTime = timestamppb.New(time.Now().Add(d))
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, ref := range accounts {
				acct, err := c.account(ctx, ref)
				if err != nil {
					return err
				}
				t.AccountIds = append(t.AccountIds, acct.Id)
			}
			cctx, cancel := c.call(ctx)
			defer cancel()
			resp, err := c.tokens.CreateToken(cctx, &mailbusv1.CreateTokenRequest{Token: t})
			if err != nil {
				return fmt.Errorf("create token %s: %w", name, err)
			}
			if a.json {
				return printJSON(a.io.Out, resp)
			}
			fmt.Fprintln(a.io.Out, resp.Secret)
			fmt.Fprintf(a.io.Err, "Created %s token %s (%s); the line above is the token, shown only now.\n"+
				"Use it with --token, MAILBUS_TOKEN or --token-file, or as gRPC metadata \"authorization: Bearer <token>\".\n",
				tokenRole(resp.Token.Role), resp.Token.Id, resp.Token.Name)
			if t.Role == mailbusv1.TokenRole_TOKEN_ROLE_DEVICE {
				var names []string
				for _, ref := range accounts {
					acct, err := c.account(ctx, ref)
					if err == nil {
						names = append(names, acct.Name)
					}
				}
				if imapAddr == "" {
					imapAddr = defaultIMAPAddress(a.server)
				}
				printMailClientSettings(a.io.Err, imapAddr, names, "the token above", readOnly)
			}
			return nil
		}),
	}
	fl := c.Flags()
	fl.StringVar(&name, "name", "", "a label for the token, such as phone (required)")
	fl.StringSliceVar(&accounts, "account", nil, "device tokens: an account the token may use, by name or id (repeat for more)")
	fl.BoolVar(&readOnly, "read-only", false, "device tokens: read, never change")
	fl.StringVar(&role, "role", "device", "device or admin")
	fl.StringVar(&expires, "expires", "", "the token stops working after this long: 90m, 12h, 30d, 2w (default never)")
	fl.StringVar(&imapAddr, "imap-address", "", "device tokens: the IMAP gateway's address shown in the mail-client settings (default the host of --server, port 7143)")
	return c
}

// defaultIMAPAddress is where the IMAP gateway of the store at server
// listens by default: mailbus serve's --imap-listen port on its host.
func defaultIMAPAddress(server string) string {
	host, _, err := net.SplitHostPort(server)
	if err != nil || host == "" {
		host = "127.0.0.1"
	}
	_, port, _ := net.SplitHostPort(imapgw.DefaultListen)
	return net.JoinHostPort(host, port)
}

// printMailClientSettings tells what to enter in a mail client to reach
// accounts through the IMAP gateway at addr.
func printMailClientSettings(w io.Writer, addr string, accounts []string, password string, readOnly bool) {
	if len(accounts) == 0 {
		return
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, "143"
	}
	security := "STARTTLS (none on loopback: mailbus serve without --tls-cert)"
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		security = "none on loopback (STARTTLS when mailbus serve has --tls-cert)"
	}
	fmt.Fprintf(w, "Mail client settings (the IMAP gateway of mailbus serve, --imap-listen):\n")
	fmt.Fprintf(w, "IMAP server: %s  port: %s  security: %s\n", host, port, security)
	for _, name := range accounts {
		fmt.Fprintf(w, "user name: %s  password: %s\n", name, password)
	}
	if readOnly {
		fmt.Fprintln(w, "(a read-only token: the client can read but not change anything)")
	}
}

func (a *app) tokenListCommand() *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the API tokens (never their secrets)",
		Example: "  mailbus token list\n  mailbus token list --all --json",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			cctx, cancel := c.call(ctx)
			defer cancel()
			resp, err := c.tokens.ListTokens(cctx, &mailbusv1.ListTokensRequest{IncludeRevoked: all})
			if err != nil {
				return fmt.Errorf("list tokens: %w", err)
			}
			if a.json {
				for _, t := range resp.Tokens {
					if err := printJSON(a.io.Out, t); err != nil {
						return err
					}
				}
				return nil
			}
			t := newTable(a.io.Out, "ID", "NAME", "ROLE", "ACCOUNTS", "ACCESS", "CREATED", "EXPIRES", "REVOKED")
			for _, tok := range resp.Tokens {
				accts, access := "all", "read-write"
				if tok.Role == mailbusv1.TokenRole_TOKEN_ROLE_DEVICE {
					accts = strings.Join(tok.AccountIds, ",")
				}
				if tok.ReadOnly {
					access = "read-only"
				}
				revoked := "-"
				if tok.RevokeTime != nil {
					revoked = formatTime(tok.RevokeTime)
				}
				expiry := "never"
				if tok.ExpireTime != nil {
					expiry = formatTime(tok.ExpireTime)
					if !tok.ExpireTime.AsTime().After(time.Now()) {
						expiry += " (expired)"
					}
				}
				t.row(tok.Id, tok.Name, tokenRole(tok.Role), accts, access, formatTime(tok.CreateTime), expiry, revoked)
			}
			return t.flush()
		}),
	}
	c.Flags().BoolVar(&all, "all", false, "also list revoked and expired tokens")
	return c
}

func (a *app) tokenRevokeCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "revoke TOKEN_ID...",
		Short:   "Revoke API tokens: they stop working at once, open watches within seconds",
		Example: "  mailbus token revoke 3f2a9c0d1b7e4a61",
		Args:    minArgs(1, "token id (see `mailbus token list`)"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			for _, id := range args {
				cctx, cancel := c.call(ctx)
				resp, err := c.tokens.RevokeToken(cctx, &mailbusv1.RevokeTokenRequest{TokenId: id})
				cancel()
				if isNotFound(err) {
					return fmt.Errorf("no token %q: `mailbus token list` shows the ids", id)
				}
				if err != nil {
					return fmt.Errorf("revoke token %s: %w", id, err)
				}
				fmt.Fprintf(a.io.Out, "Revoked %s token %s (%s)\n", tokenRole(resp.Token.Role), resp.Token.Id, resp.Token.Name)
			}
			return nil
		}),
	}
}

func tokenRole(r mailbusv1.TokenRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "TOKEN_ROLE_"))
}

// parseExpiry reads --expires: a Go duration (90m, 12h) or a number of
// days or weeks (30d, 2w).
func parseExpiry(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	var d time.Duration
	var err error
	switch {
	case strings.HasSuffix(s, "d"), strings.HasSuffix(s, "w"):
		unit := 24 * time.Hour
		if strings.HasSuffix(s, "w") {
			unit *= 7
		}
		var n int64
		n, err = strconv.ParseInt(s[:len(s)-1], 10, 32)
		d = time.Duration(n) * unit
	default:
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 {
		return 0, usagef("--expires %q: want a positive duration such as 90m, 12h, 30d or 2w", s)
	}
	return d, nil
}

// adminTokenName is the name the store gives the token of admin.token.
const adminTokenName = "admin (admin.token)"

func (a *app) tokenRotateAdminCommand() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:   "rotate-admin [--data DIR]",
		Short: "Replace the admin token of mailbus serve: a new one in <data>/admin.token, the old one revoked",
		Long: `Make a new admin token, write it to <data>/admin.token in place of the old
one (atomically, mode 0600), then revoke the old one: the running server
accepts the new token at once and refuses the old one, open watches
included, within seconds. Use it when the admin token may have leaked.
Run it on the machine of mailbus serve; it authenticates with the old token
in the file unless --token, --token-file or MAILBUS_TOKEN names another
admin token.`,
		Example: "  mailbus token rotate-admin\n  mailbus token rotate-admin --data /var/lib/mailbus",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			path := filepath.Join(data, "admin.token")
			old, err := apitoken.ReadFile(path)
			if err != nil {
				return fmt.Errorf("the admin token of --data %s: %w (is it the data directory of mailbus serve?)", data, err)
			}
			oldID, err := apitoken.ID(old)
			if err != nil {
				return fmt.Errorf("the admin token in %s: %w", path, err)
			}
			if _, set := a.env(apitoken.EnvToken); strings.TrimSpace(a.token) == "" && a.tokenFile == "" && !set {
				a.tokenFile = path
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			cctx, cancel := c.call(ctx)
			defer cancel()
			resp, err := c.tokens.CreateToken(cctx, &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{Name: adminTokenName, Role: mailbusv1.TokenRole_TOKEN_ROLE_ADMIN}})
			if err != nil {
				return fmt.Errorf("create the new admin token: %w", err)
			}
			if err := replaceTokenFile(path, resp.Secret); err != nil {
				// The new token works but is nowhere else: revoke it, keep the
				// old one.
				rctx, rcancel := c.call(ctx)
				defer rcancel()
				if _, rerr := c.tokens.RevokeToken(rctx, &mailbusv1.RevokeTokenRequest{TokenId: resp.Token.Id}); rerr != nil {
					return fmt.Errorf("write %s: %w (and revoking the new token %s failed: %w)", path, err, resp.Token.Id, rerr)
				}
				return fmt.Errorf("write %s: %w (the old token stays)", path, err)
			}
			// Revoke the old token with the new one: that it works is checked
			// on the way.
			a.token, a.tokenFile = "", path
			nc, err := a.dial()
			if err != nil {
				return err
			}
			defer nc.Close()
			rctx, rcancel := nc.call(ctx)
			defer rcancel()
			if _, err := nc.tokens.RevokeToken(rctx, &mailbusv1.RevokeTokenRequest{TokenId: oldID}); err != nil && !isNotFound(err) {
				return fmt.Errorf("%s holds the new admin token %s, but revoking the old one (%s) failed: %w; run `mailbus token revoke %s`", path, resp.Token.Id, oldID, err, oldID)
			}
			fmt.Fprintf(a.io.Out, "Rotated the admin token: %s holds the new token %s; the old one (%s) is revoked.\n", path, resp.Token.Id, oldID)
			return nil
		}),
	}
	a.stringVar(c.Flags(), &data, "data", "MAILBUS_DATA", mailbus.DefaultDataDir, "data directory of mailbus serve, whose admin.token is replaced")
	return c
}

// replaceTokenFile writes a token to path in place of the file there:
// a temporary file (mode 0600) renamed over it, so that a reader sees the
// old token or the new one, never half of one.
func replaceTokenFile(path, token string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".admin.token-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
