package mailbus_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/demo"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// Config.ExactListSizes reaches the POP3 fetcher: a message without a
// final line break, from a server with exact LIST sizes (the demo POP3
// server's are), is stored as delivered when the server is named, and
// with the CRLF the server appends when it is not.
func TestExactListSizes(t *testing.T) {
	const raw = "From: a@example.org\r\nSubject: no final line break\r\nMessage-ID: <nolb@example.org>\r\n\r\nlast line"
	for _, c := range []struct {
		name  string
		exact []string
		want  string
	}{
		{"default", nil, raw + "\r\n"},
		{"every server", []string{"*"}, raw},
		{"this host", []string{"127.0.0.1"}, raw},
		{"another host", []string{"pop.example.org"}, raw + "\r\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			pop, err := demo.StartPOP3("127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer pop.Close()
			pop.Deliver([]byte(raw))
			r := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data"), ExactListSizes: c.exact})
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			conn := dial(t, r.info)
			created, err := mailbusv1.NewAccountServiceClient(conn).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
				Name: "pop", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: pop.Addr().IP.String(), Port: uint32(pop.Addr().Port),
				Security: mailbusv1.Security_SECURITY_NONE, Username: demo.POP3User, Secret: demo.POP3Password,
				Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_KEEP, PollInterval: durationpb.New(time.Second),
			}})
			if err != nil {
				t.Fatal(err)
			}
			mailboxes := mailbusv1.NewMailboxServiceClient(conn)
			var id string
			for id == "" {
				if ctx.Err() != nil {
					t.Fatal("the message never arrived")
				}
				time.Sleep(50 * time.Millisecond)
				boxes, err := mailboxes.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: created.Account.Id})
				if err != nil || len(boxes.Mailboxes) == 0 {
					continue
				}
				msgs, err := mailboxes.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: boxes.Mailboxes[0].Id, PageSize: 1000})
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range msgs.Messages {
					if m.GetEnvelope().GetSubject() == "no final line break" {
						id = m.Id
					}
				}
			}
			stream, err := mailboxes.GetRawMessage(ctx, &mailbusv1.GetRawMessageRequest{MessageId: id})
			if err != nil {
				t.Fatal(err)
			}
			var got []byte
			for {
				resp, err := stream.Recv()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, resp.Data...)
			}
			if !bytes.Equal(got, []byte(c.want)) {
				t.Errorf("stored %q, want %q", got, c.want)
			}
		})
	}
}
