package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailflags"
)

// flagAliases are the system flags by their plain names.
var flagAliases = map[string]string{
	"seen": `\Seen`, "read": `\Seen`, "flagged": `\Flagged`, "answered": `\Answered`,
	"draft": `\Draft`, "deleted": `\Deleted`,
}

func (a *app) flagCommand() *cobra.Command {
	return group("flag", "Add or remove flags (seen, flagged, keywords) on messages",
		`  mailbus flag add --account work 42 43 seen
  mailbus flag add --account work 42 '\Flagged' '$Important'
  mailbus flag remove --account work 42 seen`,
		a.flagChangeCommand(true), a.flagChangeCommand(false))
}

func (a *app) flagChangeCommand(add bool) *cobra.Command {
	var account string
	verb, short := "add", "Add flags to messages"
	if !add {
		verb, short = "remove", "Remove flags from messages"
	}
	c := &cobra.Command{
		Use:   verb + " --account N ID... FLAG...",
		Short: short,
		Long: short + `. Arguments that are numbers are message ids, the others flags:
the system flags by name (seen, flagged, answered, draft, deleted) or as
IMAP spells them (\Seen), and keywords such as $Important or work.
On IMAP accounts the change is written back to the server.`,
		Example: fmt.Sprintf(`  mailbus flag %[1]s --account work 42 seen
  mailbus flag %[1]s --account work 42 43 44 flagged '$Important'`, verb),
		Args: func(cmd *cobra.Command, args []string) error {
			_, _, err := splitFlagArgs(args)
			return err
		},
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			ids, flags, err := splitFlagArgs(args)
			if err != nil {
				return err
			}
			return a.withAccount(ctx, cmd, account, func(c *client, acct *mailbusv1.Account) error {
				req := &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: ids, DeviceId: a.device}
				if add {
					req.Add = flags
				} else {
					req.Remove = flags
				}
				cctx, cancel := c.call(ctx)
				defer cancel()
				resp, err := c.mailboxes.UpdateFlags(cctx, req)
				if err != nil {
					return fmt.Errorf("flag %s: %w", verb, err)
				}
				if a.json {
					for _, m := range resp.Messages {
						if err := printJSON(a.io.Out, m); err != nil {
							return err
						}
					}
					return nil
				}
				for _, m := range resp.Messages {
					fmt.Fprintf(a.io.Out, "%s: %s\n", m.Id, formatFlags(m.Flags))
				}
				fmt.Fprintf(a.io.Out, "state %d\n", resp.State)
				return nil
			})
		}),
	}
	a.accountFlag(c, &account)
	return c
}

// splitFlagArgs splits arguments into message ids (numbers) and flags.
func splitFlagArgs(args []string) (ids, flags []string, err error) {
	for _, arg := range args {
		if isID(arg) {
			ids = append(ids, arg)
			continue
		}
		f := arg
		if alias, ok := flagAliases[strings.ToLower(arg)]; ok {
			f = alias
		}
		canon, err := mailflags.Canonical(f)
		if err != nil {
			return nil, nil, usagef("flag %q: %v", arg, err)
		}
		flags = append(flags, canon)
	}
	if len(ids) == 0 {
		return nil, nil, usagef("missing message id")
	}
	if len(flags) == 0 {
		return nil, nil, usagef("missing flag (such as seen, flagged or $Important)")
	}
	return ids, flags, nil
}
