package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func (a *app) changesCommand() *cobra.Command {
	var account string
	var since uint64
	var max uint32
	c := &cobra.Command{
		Use:   "changes --account N --since STATE",
		Short: "Show what changed in an account since a state (delta sync, as a device does)",
		Long: `Show the ids of the messages and mailboxes created, updated and deleted
since a state, and the new state to ask from next time. Every list and
account show prints the account's current state. A state older than the
store's change log is refused: list the account again.`,
		Example: `  mailbus changes --account work --since 0
  mailbus changes --account work --since 1234 --json`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "account", "since"); err != nil {
				return err
			}
			return a.withAccount(ctx, cmd, account, func(c *client, acct *mailbusv1.Account) error {
				state := since
				for {
					cctx, cancel := c.call(ctx)
					resp, err := c.sync.GetChanges(cctx, &mailbusv1.GetChangesRequest{AccountId: acct.Id, SinceState: state, MaxChanges: max})
					cancel()
					if err != nil {
						return fmt.Errorf("changes of %s since %d: %w", acct.Name, state, err)
					}
					if a.json {
						if err := printJSON(a.io.Out, resp); err != nil {
							return err
						}
					} else {
						a.printChanges(resp)
					}
					if !resp.HasMore || resp.NewState == state {
						return nil
					}
					state = resp.NewState
				}
			})
		}),
	}
	a.accountFlag(c, &account)
	c.Flags().Uint64Var(&since, "since", 0, "the state to start from (0: the start of the kept log)")
	c.Flags().Uint32Var(&max, "max", 0, "at most this many ids per request (default 1000)")
	return c
}

func (a *app) printChanges(r *mailbusv1.GetChangesResponse) {
	w := a.io.Out
	fmt.Fprintf(w, "state %d -> %d\n", r.OldState, r.NewState)
	list := func(name string, ids []string) {
		if len(ids) > 0 {
			fmt.Fprintf(w, "  %-18s %s\n", name+":", strings.Join(ids, " "))
		}
	}
	list("created messages", r.CreatedMessageIds)
	list("updated messages", r.UpdatedMessageIds)
	list("deleted messages", r.DeletedMessageIds)
	list("created mailboxes", r.CreatedMailboxIds)
	list("updated mailboxes", r.UpdatedMailboxIds)
	list("deleted mailboxes", r.DeletedMailboxIds)
	if r.OldState == r.NewState {
		fmt.Fprintln(w, "  no changes")
	}
}
