package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func (a *app) messageCommand() *cobra.Command {
	return group("message", "List, show, move and delete messages",
		`  mailbus message list --account work --mailbox INBOX --limit 20
  mailbus message show 42
  mailbus message raw 42 > message.eml
  mailbus message attachment 42 2 -o invoice.pdf
  mailbus message move 42 43 --to Archive
  mailbus message delete 42`,
		a.messageListCommand(), a.messageShowCommand(), a.messageRawCommand(), a.messageAttachmentCommand(), a.messageMoveCommand(), a.messageDeleteCommand())
}

// messageIDs checks that every argument is a message id.
func messageIDs(args []string) ([]string, error) {
	for _, id := range args {
		if !isID(id) {
			return nil, usagef("message id %q: want a number (`mailbus message list` shows the ids)", id)
		}
	}
	return args, nil
}

func (a *app) messageListCommand() *cobra.Command {
	var account, mailbox string
	var limit int
	c := &cobra.Command{
		Use:   "list --account N [--mailbox INBOX] [--limit 50]",
		Short: "List the messages of a mailbox, newest first",
		Example: `  mailbus message list --account work
  mailbus message list --account work --mailbox Archive --limit 0      # all of them
  mailbus message list --account 1 --json | jq -r '.envelope.subject'`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if limit < 0 {
				return usagef("--limit %d: want 0 (all) or more", limit)
			}
			return a.withAccount(ctx, cmd, account, func(c *client, acct *mailbusv1.Account) error {
				mb, err := c.mailbox(ctx, acct, mailbox)
				if err != nil {
					return err
				}
				msgs, err := c.listMessages(ctx, mb.Id, limit)
				if err != nil {
					return fmt.Errorf("list messages of %s/%s: %w", acct.Name, mb.Name, err)
				}
				if a.json {
					for _, m := range msgs {
						if err := printJSON(a.io.Out, m); err != nil {
							return err
						}
					}
					return nil
				}
				if len(msgs) == 0 {
					fmt.Fprintf(a.io.Out, "No messages in %s/%s.\n", acct.Name, mb.Name)
					return nil
				}
				t := newTable(a.io.Out, "ID", "DATE", "FROM", "SUBJECT", "FLAGS", "SIZE")
				for _, m := range msgs {
					date := m.GetEnvelope().GetDate()
					if date == nil {
						date = m.InternalDate
					}
					flags := formatFlags(m.Flags)
					if m.HasAttachments {
						flags = strings.TrimSpace(flags + " (attachment)")
					}
					t.row(m.Id, formatTime(date), truncate(shortFrom(m.GetEnvelope().GetFrom()), 24), truncate(m.GetEnvelope().GetSubject(), 60), flags, humanBytes(m.Size))
				}
				if err := t.flush(); err != nil {
					return err
				}
				if limit > 0 && len(msgs) == limit && int(mb.TotalMessages) > limit {
					fmt.Fprintf(a.io.Out, "(%d of %d; --limit 0 lists all)\n", limit, mb.TotalMessages)
				}
				return nil
			})
		}),
	}
	a.accountFlag(c, &account)
	c.Flags().StringVarP(&mailbox, "mailbox", "m", "INBOX", "the mailbox (name or id)")
	c.Flags().IntVarP(&limit, "limit", "n", 50, "at most this many messages; 0 for all")
	return c
}

// listMessages pages through a mailbox up to limit messages (0: all).
func (c *client) listMessages(ctx context.Context, mailboxID string, limit int) ([]*mailbusv1.MessageSummary, error) {
	var out []*mailbusv1.MessageSummary
	token := ""
	for {
		size := 1000
		if limit > 0 && limit-len(out) < size {
			size = limit - len(out)
		}
		cctx, cancel := c.call(ctx)
		resp, err := c.mailboxes.ListMessages(cctx, &mailbusv1.ListMessagesRequest{MailboxId: mailboxID, PageSize: uint32(size), PageToken: token})
		cancel()
		if err != nil {
			return nil, err
		}
		out = append(out, resp.Messages...)
		if resp.NextPageToken == "" || (limit > 0 && len(out) >= limit) {
			return out, nil
		}
		token = resp.NextPageToken
	}
}

func (c *client) message(ctx context.Context, id string) (*mailbusv1.Message, error) {
	cctx, cancel := c.call(ctx)
	defer cancel()
	resp, err := c.mailboxes.GetMessage(cctx, &mailbusv1.GetMessageRequest{MessageId: id})
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("no message %s: `mailbus message list` shows the ids", id)
		}
		return nil, err
	}
	return resp.Message, nil
}

func (a *app) messageShowCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show a message: headers, flags, text and attachments",
		Example: `  mailbus message show 42
  mailbus message show 42 --json | jq .textBody`,
		Args: exactArgs(1, "message id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if _, err := messageIDs(args); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			m, err := c.message(ctx, args[0])
			if err != nil {
				return err
			}
			if a.json {
				return printJSON(a.io.Out, m)
			}
			where := ""
			if acct, err := c.account(ctx, m.GetSummary().GetAccountId()); err == nil {
				where = acct.Name
				if boxes, _, err := c.mailboxList(ctx, acct.Id); err == nil {
					for _, b := range boxes {
						if b.Id == m.GetSummary().GetMailboxId() {
							where += "/" + b.Name
						}
					}
				}
			}
			a.printMessage(m, where)
			return nil
		}),
	}
}

func (a *app) printMessage(m *mailbusv1.Message, where string) {
	w := a.io.Out
	s := m.GetSummary()
	env := s.GetEnvelope()
	fmt.Fprintf(w, "Message %s", s.Id)
	if where != "" {
		fmt.Fprintf(w, " in %s", where)
	}
	fmt.Fprintln(w)
	field := func(name, value string) {
		if value != "" {
			fmt.Fprintf(w, "%-9s %s\n", name+":", value)
		}
	}
	field("From", formatAddrs(env.GetFrom()))
	field("To", formatAddrs(env.GetTo()))
	field("Cc", formatAddrs(env.GetCc()))
	if env.GetDate() != nil {
		field("Date", env.GetDate().AsTime().Local().Format("Mon, 02 Jan 2006 15:04 MST"))
	}
	field("Subject", env.GetSubject())
	field("Flags", formatFlags(s.Flags))
	field("Size", humanBytes(s.Size))
	if len(m.Attachments) > 0 {
		fmt.Fprintln(w, "Attachments:")
		for _, at := range m.Attachments {
			name := at.Filename
			if name == "" {
				name = "(no name)"
			}
			fmt.Fprintf(w, "  part %-5s %s  %s  %s\n", at.PartId, name, at.ContentType, humanBytes(at.Size))
		}
		fmt.Fprintf(w, "  (save one: mailbus message attachment %s PART -o FILE)\n", s.Id)
	}
	for _, pe := range m.ParseErrors {
		fmt.Fprintf(w, "Note: %s\n", pe)
	}
	fmt.Fprintln(w)
	switch {
	case m.TextBody != "":
		fmt.Fprintln(w, strings.TrimRight(m.TextBody, "\r\n"))
	case m.HtmlBody != "":
		fmt.Fprintln(w, "(HTML only; `mailbus message raw` shows the source)")
	default:
		fmt.Fprintln(w, "(no text body)")
	}
}

func (a *app) messageRawCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "raw ID",
		Short: "Write the message byte-exact as the server delivered it (RFC 5322) to standard output",
		Example: `  mailbus message raw 42 > message.eml
  mailbus message raw 42 | grep -i '^received:'`,
		Args: exactArgs(1, "message id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if _, err := messageIDs(args); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.mailboxes.GetRawMessage(ctx, &mailbusv1.GetRawMessageRequest{MessageId: args[0]})
			if err != nil {
				return err
			}
			for {
				chunk, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					return nil
				}
				if err != nil {
					if isNotFound(err) {
						return fmt.Errorf("no message %s: `mailbus message list` shows the ids", args[0])
					}
					return err
				}
				if _, err := a.io.Out.Write(chunk.Data); err != nil {
					return err
				}
			}
		}),
	}
}

// messagesAccount finds the account of messages: --account, or the first
// message's.
func (a *app) messagesAccount(ctx context.Context, c *client, account string, ids []string) (*mailbusv1.Account, error) {
	if account != "" {
		return c.account(ctx, account)
	}
	m, err := c.message(ctx, ids[0])
	if err != nil {
		return nil, err
	}
	return c.account(ctx, m.GetSummary().GetAccountId())
}

func (a *app) messageMoveCommand() *cobra.Command {
	var account, to string
	c := &cobra.Command{
		Use:   "move ID... --to MAILBOX",
		Short: "Move messages to another mailbox of their account",
		Example: `  mailbus message move 42 --to Archive
  mailbus message move 42 43 44 --to "Old mail" --account work`,
		Args: minArgs(1, "message id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if err := requireFlags(cmd, "to"); err != nil {
				return err
			}
			ids, err := messageIDs(args)
			if err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			acct, err := a.messagesAccount(ctx, c, account, ids)
			if err != nil {
				return err
			}
			mb, err := c.mailbox(ctx, acct, to)
			if err != nil {
				return err
			}
			cctx, cancel := c.call(ctx)
			defer cancel()
			resp, err := c.mailboxes.MoveMessages(cctx, &mailbusv1.MoveMessagesRequest{AccountId: acct.Id, MessageIds: ids, ToMailboxId: mb.Id, DeviceId: a.device})
			if err != nil {
				return fmt.Errorf("move to %s: %w", mb.Name, err)
			}
			if a.json {
				for _, m := range resp.Messages {
					if err := printJSON(a.io.Out, m); err != nil {
						return err
					}
				}
				return nil
			}
			fmt.Fprintf(a.io.Out, "Moved %d message(s) to %s/%s (state %d).\n", len(resp.Messages), acct.Name, mb.Name, resp.State)
			return nil
		}),
	}
	a.accountFlag(c, &account)
	c.Flags().StringVar(&to, "to", "", "the destination mailbox (name or id)")
	return c
}

func (a *app) messageDeleteCommand() *cobra.Command {
	var account string
	c := &cobra.Command{
		Use:   "delete ID...",
		Short: "Delete messages (IMAP: moved to Trash on the server when there is one, else expunged)",
		Example: `  mailbus message delete 42
  mailbus message delete 42 43 --account work`,
		Aliases: []string{"rm", "remove"},
		Args:    minArgs(1, "message id"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			ids, err := messageIDs(args)
			if err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			acct, err := a.messagesAccount(ctx, c, account, ids)
			if err != nil {
				return err
			}
			cctx, cancel := c.call(ctx)
			defer cancel()
			resp, err := c.mailboxes.DeleteMessages(cctx, &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: ids, DeviceId: a.device})
			if err != nil {
				return fmt.Errorf("delete: %w", err)
			}
			if a.json {
				return printJSON(a.io.Out, resp)
			}
			fmt.Fprintf(a.io.Out, "Deleted %d message(s) from %s (state %d).\n", len(ids), acct.Name, resp.State)
			return nil
		}),
	}
	a.accountFlag(c, &account)
	return c
}

func (a *app) messageAttachmentCommand() *cobra.Command {
	var output string
	c := &cobra.Command{
		Use:   "attachment ID PART [-o FILE]",
		Short: "Write an attachment (decoded) to a file or standard output; message show lists the parts",
		Example: `  mailbus message attachment 42 2 -o invoice.pdf
  mailbus message attachment 42 2 > invoice.pdf`,
		Args: exactArgs(2, "message id and part"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if _, err := messageIDs(args[:1]); err != nil {
				return err
			}
			c, err := a.dial()
			if err != nil {
				return err
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			stream, err := c.mailboxes.GetAttachment(ctx, &mailbusv1.GetAttachmentRequest{MessageId: args[0], PartId: args[1]})
			if err != nil {
				return err
			}
			// The first chunk says whether there is such a part, before a
			// file is created.
			first, err := stream.Recv()
			if err != nil && !errors.Is(err, io.EOF) {
				if isNotFound(err) {
					return fmt.Errorf("message %s has no part %s: `mailbus message show %s` lists the attachments", args[0], args[1], args[0])
				}
				return err
			}
			w := a.io.Out
			if output != "" && output != "-" {
				f, err := os.Create(output)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			for chunk := first; chunk != nil; {
				if _, err := w.Write(chunk.Data); err != nil {
					return err
				}
				chunk, err = stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return err
				}
			}
			if f, ok := w.(*os.File); ok && f != a.io.Out {
				if err := f.Close(); err != nil {
					return err
				}
				fmt.Fprintf(a.io.Err, "Wrote %s (%s, %s).\n", output, first.GetFilename(), first.GetContentType())
			}
			return nil
		}),
	}
	c.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of standard output")
	return c
}
