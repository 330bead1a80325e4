package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func (a *app) tokenCommand() *cobra.Command {
	return group("token", "Create, list and revoke API tokens (admin token needed)",
		`  mailbus token create --name phone --account work
  mailbus token create --name archiver --account work --account 2 --read-only
  mailbus token create --name imapsync --role service
  mailbus token list
  mailbus token revoke 3f2a9c0d1b7e4a61`,
		a.tokenCreateCommand(), a.tokenListCommand(), a.tokenRevokeCommand())
}

func (a *app) tokenCreateCommand() *cobra.Command {
	var (
		name, role string
		accounts   []string
		readOnly   bool
	)
	c := &cobra.Command{
		Use:   "create --name N (--account A ... [--read-only] | --role admin|service)",
		Short: "Make an API token and print it (once: the store keeps only a hash)",
		Long: `Make an API token. A device token (the default role) reads, and unless
--read-only changes, only the accounts named with --account (by name or id);
every other account is invisible to it. An admin token manages accounts and
tokens; a service token is the credential of a separately run imapsync or
pop3fetcher (their --token-file) and the only one that may ingest mail.

The token is printed once. Send it as the gRPC metadata
"authorization: Bearer <token>" (grpcurl -H), or give it to mailbus with
--token, MAILBUS_TOKEN or --token-file.`,
		Example: `  mailbus token create --name phone --account work
  mailbus token create --name crm --account work --account sales --read-only
  mailbus token create --name imapsync --role service > imapsync.token`,
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
			case "admin", "service":
				t.Role = mailbusv1.TokenRole_TOKEN_ROLE_ADMIN
				if role == "service" {
					t.Role = mailbusv1.TokenRole_TOKEN_ROLE_SERVICE
				}
				if len(accounts) > 0 || readOnly {
					return usagef("--account and --read-only are for device tokens; %s tokens reach every account", role)
				}
			default:
				return usagef("--role %q: want device, admin or service", role)
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
			return nil
		}),
	}
	fl := c.Flags()
	fl.StringVar(&name, "name", "", "a label for the token, such as phone (required)")
	fl.StringSliceVar(&accounts, "account", nil, "device tokens: an account the token may use, by name or id (repeat for more)")
	fl.BoolVar(&readOnly, "read-only", false, "device tokens: read, never change")
	fl.StringVar(&role, "role", "device", "device, admin or service")
	return c
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
			t := newTable(a.io.Out, "ID", "NAME", "ROLE", "ACCOUNTS", "ACCESS", "CREATED", "REVOKED")
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
				t.row(tok.Id, tok.Name, tokenRole(tok.Role), accts, access, formatTime(tok.CreateTime), revoked)
			}
			return t.flush()
		}),
	}
	c.Flags().BoolVar(&all, "all", false, "also list revoked tokens")
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
