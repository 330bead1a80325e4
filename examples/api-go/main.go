// SPDX-License-Identifier: Apache-2.0

// Command api-go is an example client of the mailbus store's API in Go,
// over Connect (connectrpc.com/connect) with the message types generated
// in github.com/mailbus/mailbus/pkg/gen: it lists the accounts its token
// sees, the first account's mailboxes and the newest messages of its
// INBOX, then replays the account's events with WatchChanges until it has
// caught up (and, with -follow, goes on printing new ones).
//
//	MAILBUS_TOKEN=mbt_... go run ./examples/api-go -url http://127.0.0.1:7400
//
// It sends binary protobuf by default and JSON with -json; both are
// Connect, over HTTP/1.1 (the store answers HTTP/2 too).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"connectrpc.com/connect"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:7400", "the store's address (its --listen), as a URL")
	account := flag.String("account", "", "the account to show, by name (default: the first listed)")
	limit := flag.Uint("limit", 10, "how many of the INBOX's newest messages to list")
	useJSON := flag.Bool("json", false, "send JSON instead of binary protobuf")
	follow := flag.Bool("follow", false, "after catching up, print new events until interrupted")
	flag.Parse()
	token := os.Getenv("MAILBUS_TOKEN")
	if token == "" {
		fmt.Fprintln(os.Stderr, "api-go: set MAILBUS_TOKEN to an API token (mailbus token create --name NAME --account ACCOUNT)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	c := newClient(strings.TrimSuffix(*url, "/"), token, *useJSON)
	if err := run(ctx, c, os.Stdout, *account, uint32(*limit), *follow); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "api-go:", err)
		os.Exit(1)
	}
}

// client holds one Connect client per method the example calls. Without
// generated Connect stubs a method is its procedure name, which the gRPC
// code generated in pkg/gen names too (…_FullMethodName).
type client struct {
	listAccounts  *connect.Client[mailbusv1.ListAccountsRequest, mailbusv1.ListAccountsResponse]
	listMailboxes *connect.Client[mailbusv1.ListMailboxesRequest, mailbusv1.ListMailboxesResponse]
	listMessages  *connect.Client[mailbusv1.ListMessagesRequest, mailbusv1.ListMessagesResponse]
	watchChanges  *connect.Client[mailbusv1.WatchChangesRequest, mailbusv1.WatchChangesResponse]
}

func newClient(baseURL, token string, useJSON bool) *client {
	opts := []connect.ClientOption{connect.WithInterceptors(bearer(token))}
	if useJSON {
		opts = append(opts, connect.WithProtoJSON())
	}
	httpClient := http.DefaultClient
	return &client{
		listAccounts: connect.NewClient[mailbusv1.ListAccountsRequest, mailbusv1.ListAccountsResponse](
			httpClient, baseURL+mailbusv1.AccountService_ListAccounts_FullMethodName, opts...),
		listMailboxes: connect.NewClient[mailbusv1.ListMailboxesRequest, mailbusv1.ListMailboxesResponse](
			httpClient, baseURL+mailbusv1.MailboxService_ListMailboxes_FullMethodName, opts...),
		listMessages: connect.NewClient[mailbusv1.ListMessagesRequest, mailbusv1.ListMessagesResponse](
			httpClient, baseURL+mailbusv1.MailboxService_ListMessages_FullMethodName, opts...),
		watchChanges: connect.NewClient[mailbusv1.WatchChangesRequest, mailbusv1.WatchChangesResponse](
			httpClient, baseURL+mailbusv1.SyncService_WatchChanges_FullMethodName, opts...),
	}
}

// bearer sends the API token in the Authorization header of every call,
// unary and streaming.
func bearer(token string) connect.Interceptor {
	return bearerInterceptor("Bearer " + token)
}

type bearerInterceptor string

func (b bearerInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", string(b))
		return next(ctx, req)
	}
}

func (b bearerInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(b))
		return conn
	}
}

func (b bearerInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// run lists, then watches, as the package comment says.
func run(ctx context.Context, c *client, out io.Writer, accountName string, limit uint32, follow bool) error {
	accounts, err := c.listAccounts.CallUnary(ctx, connect.NewRequest(&mailbusv1.ListAccountsRequest{}))
	if err != nil {
		// A Connect error carries the store's code: unauthenticated for a
		// bad token, permission_denied for an account the token may not see.
		return fmt.Errorf("list accounts: %w", err)
	}
	fmt.Fprintln(out, "accounts:")
	var account *mailbusv1.Account
	for _, a := range accounts.Msg.GetAccounts() {
		state := ""
		if a.GetStatus() != nil {
			state = strings.TrimPrefix(a.GetStatus().GetState().String(), "SYNC_STATE_")
		}
		fmt.Fprintf(out, "  %s %s %s@%s %s\n", a.GetId(), a.GetName(), a.GetUsername(), a.GetHost(), state)
		if account == nil && (accountName == "" || a.GetName() == accountName) {
			account = a
		}
	}
	if account == nil {
		return errors.New("no account to show")
	}

	mailboxes, err := c.listMailboxes.CallUnary(ctx, connect.NewRequest(&mailbusv1.ListMailboxesRequest{AccountId: account.GetId()}))
	if err != nil {
		return fmt.Errorf("list mailboxes of %s: %w", account.GetName(), err)
	}
	fmt.Fprintf(out, "mailboxes of %s:\n", account.GetName())
	var inbox *mailbusv1.Mailbox
	for _, m := range mailboxes.Msg.GetMailboxes() {
		fmt.Fprintf(out, "  %s %s (%d messages, %d unread)\n", m.GetId(), m.GetName(), m.GetTotalMessages(), m.GetUnreadMessages())
		if m.GetRole() == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX || (inbox == nil && strings.EqualFold(m.GetName(), "INBOX")) {
			inbox = m
		}
	}
	if inbox != nil {
		messages, err := c.listMessages.CallUnary(ctx, connect.NewRequest(&mailbusv1.ListMessagesRequest{MailboxId: inbox.GetId(), PageSize: limit}))
		if err != nil {
			return fmt.Errorf("list messages of %s: %w", inbox.GetName(), err)
		}
		fmt.Fprintf(out, "newest messages of %s:\n", inbox.GetName())
		for _, m := range messages.Msg.GetMessages() {
			env := m.GetEnvelope()
			from, date := "", ""
			if len(env.GetFrom()) > 0 {
				from = env.GetFrom()[0].GetEmail()
			}
			if env.GetDate() != nil {
				date = env.GetDate().AsTime().Format(time.DateOnly)
			}
			fmt.Fprintf(out, "  %s %s %-24s %s\n", m.GetId(), date, from, env.GetSubject())
		}
	}

	// The events after state 0: all the account's history that the store
	// keeps, then the live ones. A client keeps the last state it saw and
	// starts from there next time.
	stream, err := c.watchChanges.CallServerStream(ctx, connect.NewRequest(&mailbusv1.WatchChangesRequest{AccountId: account.GetId(), SkipStatus: true}))
	if err != nil {
		return fmt.Errorf("watch changes of %s: %w", account.GetName(), err)
	}
	defer stream.Close()
	fmt.Fprintf(out, "events of %s:\n", account.GetName())
	events := 0
	for stream.Receive() {
		item := stream.Msg()
		if item.GetCaughtUp() {
			fmt.Fprintf(out, "caught up after %d events\n", events)
			if !follow {
				return nil
			}
			continue
		}
		events++
		ev := item.GetEvent()
		fmt.Fprintf(out, "  state %d %s\n", ev.GetState(), eventKind(ev))
	}
	if err := stream.Err(); err != nil {
		return fmt.Errorf("watch changes of %s: %w", account.GetName(), err)
	}
	return errors.New("the store ended the watch")
}

// eventKind names what an event is about: its payload's field name, as
// JSON names it ("messageCreated").
func eventKind(ev *mailbusv1.Event) string {
	m := ev.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload")); fd != nil {
		return fd.JSONName()
	}
	return "unknown"
}
