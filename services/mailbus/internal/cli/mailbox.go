package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func (a *app) mailboxCommand() *cobra.Command {
	return group("mailbox", "List, create, rename and delete an account's mailboxes (folders)",
		`  mailbus mailbox list --account work
  mailbus mailbox create --account work Projects
  mailbus mailbox rename --account work Projects Archive/Projects
  mailbus mailbox delete --account work Archive/Projects`,
		a.mailboxListCommand(), a.mailboxCreateCommand(), a.mailboxRenameCommand(), a.mailboxDeleteCommand())
}

// accountFlag adds the --account flag.
func (a *app) accountFlag(c *cobra.Command, p *string) {
	c.Flags().StringVarP(p, "account", "a", "", "the account (name or id)")
	_ = c.RegisterFlagCompletionFunc("account", a.completeAccounts)
}

// completeAccounts offers the store's account names to shell completion.
func (a *app) completeAccounts(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
	c, err := a.dial()
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
	defer cancel()
	accts, err := c.allAccounts(ctx)
	if err != nil {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	var names []string
	for _, acct := range accts {
		if strings.HasPrefix(acct.Name, toComplete) {
			names = append(names, acct.Name)
		}
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

// withAccount dials the store and resolves --account, which is required.
func (a *app) withAccount(ctx context.Context, cmd *cobra.Command, ref string, f func(c *client, acct *mailbusv1.Account) error) error {
	if err := requireFlags(cmd, "account"); err != nil {
		return err
	}
	c, err := a.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	acct, err := c.account(ctx, ref)
	if err != nil {
		return err
	}
	return f(c, acct)
}

func (a *app) mailboxListCommand() *cobra.Command {
	var account string
	c := &cobra.Command{
		Use:     "list --account N",
		Short:   "List an account's mailboxes with their message counts",
		Example: "  mailbus mailbox list --account work\n  mailbus mailbox list --account 1 --json",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			return a.withAccount(ctx, cmd, account, func(c *client, acct *mailbusv1.Account) error {
				boxes, state, err := c.mailboxList(ctx, acct.Id)
				if err != nil {
					return fmt.Errorf("list mailboxes of %s: %w", acct.Name, err)
				}
				if a.json {
					for _, m := range boxes {
						if err := printJSON(a.io.Out, m); err != nil {
							return err
						}
					}
					return nil
				}
				if len(boxes) == 0 {
					fmt.Fprintf(a.io.Out, "Account %s has no mailboxes yet (state: %s).\n", acct.Name, stateName(acct.GetStatus().GetState()))
					return nil
				}
				t := newTable(a.io.Out, "ID", "NAME", "ROLE", "MESSAGES", "UNREAD", "")
				for _, m := range boxes {
					note := ""
					if m.LocalOnly {
						note = "local only"
					}
					t.row(m.Id, m.Name, roleName(m.Role), strconv.FormatUint(uint64(m.TotalMessages), 10), strconv.FormatUint(uint64(m.UnreadMessages), 10), note)
				}
				if err := t.flush(); err != nil {
					return err
				}
				fmt.Fprintf(a.io.Out, "state %d\n", state)
				return nil
			})
		}),
	}
	a.accountFlag(c, &account)
	return c
}

func (a *app) mailboxCreateCommand() *cobra.Command {
	var account string
	c := &cobra.Command{
		Use:   "create --account N NAME",
		Short: "Create a mailbox (on IMAP accounts also on the server)",
		Example: `  mailbus mailbox create --account work Projects
  mailbus mailbox create --account work Projects/2026`,
		Args: exactArgs(1, "mailbox name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			return a.withAccount(ctx, cmd, account, func(c *client, acct *mailbusv1.Account) error {
				cctx, cancel := c.call(ctx)
				defer cancel()
				resp, err := c.mailboxes.CreateMailbox(cctx, &mailbusv1.CreateMailboxRequest{AccountId: acct.Id, Name: args[0], DeviceId: a.device})
				if err != nil {
					return fmt.Errorf("create mailbox %q in %s: %w", args[0], acct.Name, err)
				}
				if a.json {
					return printJSON(a.io.Out, resp.Mailbox)
				}
				fmt.Fprintf(a.io.Out, "Created mailbox %s (id %s) in %s.\n", resp.Mailbox.Name, resp.Mailbox.Id, acct.Name)
				return nil
			})
		}),
	}
	a.accountFlag(c, &account)
	return c
}

func (a *app) mailboxRenameCommand() *cobra.Command {
	var account string
	c := &cobra.Command{
		Use:     "rename --account N MAILBOX NEW-NAME",
		Short:   "Rename a mailbox (by name or id); the inbox cannot be renamed",
		Example: "  mailbus mailbox rename --account work Projects Archive/Projects",
		Args:    exactArgs(2, "mailbox and new name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			return a.withAccount(ctx, cmd, account, func(c *client, acct *mailbusv1.Account) error {
				mb, err := c.mailbox(ctx, acct, args[0])
				if err != nil {
					return err
				}
				cctx, cancel := c.call(ctx)
				defer cancel()
				resp, err := c.mailboxes.RenameMailbox(cctx, &mailbusv1.RenameMailboxRequest{MailboxId: mb.Id, NewName: args[1], DeviceId: a.device})
				if err != nil {
					return fmt.Errorf("rename mailbox %s: %w", mb.Name, err)
				}
				if a.json {
					return printJSON(a.io.Out, resp.Mailbox)
				}
				fmt.Fprintf(a.io.Out, "Renamed mailbox %s to %s in %s.\n", mb.Name, resp.Mailbox.Name, acct.Name)
				return nil
			})
		}),
	}
	a.accountFlag(c, &account)
	return c
}

func (a *app) mailboxDeleteCommand() *cobra.Command {
	var account string
	c := &cobra.Command{
		Use:     "delete --account N MAILBOX",
		Short:   "Delete a mailbox (by name or id) and the messages in it",
		Example: "  mailbus mailbox delete --account work Archive/Projects",
		Aliases: []string{"rm", "remove"},
		Args:    exactArgs(1, "mailbox name or id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			return a.withAccount(ctx, cmd, account, func(c *client, acct *mailbusv1.Account) error {
				mb, err := c.mailbox(ctx, acct, args[0])
				if err != nil {
					return err
				}
				cctx, cancel := c.call(ctx)
				defer cancel()
				if _, err := c.mailboxes.DeleteMailbox(cctx, &mailbusv1.DeleteMailboxRequest{MailboxId: mb.Id, DeviceId: a.device}); err != nil {
					return fmt.Errorf("delete mailbox %s: %w", mb.Name, err)
				}
				if a.json {
					return printJSON(a.io.Out, mb)
				}
				fmt.Fprintf(a.io.Out, "Deleted mailbox %s (id %s) from %s.\n", mb.Name, mb.Id, acct.Name)
				return nil
			})
		}),
	}
	a.accountFlag(c, &account)
	return c
}
