package mailbus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/demo"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// countingListener counts the connections the store's port accepts.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

// TestServeFetchersInProcess: in mailbus serve, imapsync and the POP3
// fetcher store mail without a connection to the store's port (decision
// 0045): the port accepts only the test's own connection while both
// fetchers store messages of one chunk, of several chunks and one
// without a final line break, each byte-exact (the in-process channel
// passes the ingest client's chunks by reference: a reused buffer would
// show here).
func TestServeFetchersInProcess(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &countingListener{Listener: ln}

	bodies := map[string][]byte{}
	mk := func(subject string, size int) []byte {
		var b bytes.Buffer
		fmt.Fprintf(&b, "From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n", subject, subject)
		for i := 0; b.Len() < size; i++ {
			fmt.Fprintf(&b, "%s line %d of a message of about %d octets\r\n", subject, i, size)
		}
		bodies[subject] = b.Bytes()
		return b.Bytes()
	}
	pop, err := demo.StartPOP3("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pop.Close()
	imap, err := demo.StartIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer imap.Close()
	for _, m := range []struct {
		subject string
		size    int
	}{{"small", 300}, {"medium", 200 << 10}, {"large", 3<<20 + 12345}} {
		pop.Deliver(mk("pop-"+m.subject, m.size))
		if err := imap.Deliver(demo.Message{Folder: "INBOX", Raw: mk("imap-"+m.subject, m.size), Date: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	const noFinalBreak = "From: a@example.org\r\nSubject: pop-nolb\r\nMessage-ID: <nolb@example.org>\r\n\r\nlast line"
	pop.Deliver([]byte(noFinalBreak))
	bodies["pop-nolb"] = []byte(noFinalBreak)

	r := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data"), Listener: lis, ExactListSizes: []string{"*"}})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	conn := dial(t, r.info)
	accounts := mailbusv1.NewAccountServiceClient(conn)
	var ids []string
	for _, a := range []*mailbusv1.Account{
		{Name: "pop", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "127.0.0.1", Port: uint32(pop.Addr().Port),
			Security: mailbusv1.Security_SECURITY_NONE, Username: demo.POP3User, Secret: demo.POP3Password,
			Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_KEEP, PollInterval: durationpb.New(time.Hour)},
		{Name: "imap", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "127.0.0.1", Port: uint32(imap.Addr().Port),
			Security: mailbusv1.Security_SECURITY_NONE, Username: demo.IMAPUser, Secret: demo.IMAPPassword},
	} {
		created, err := accounts.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: a})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, created.Account.Id)
	}
	found := map[string]string{} // subject -> message id
	for len(found) < len(bodies) {
		if ctx.Err() != nil {
			t.Fatalf("stored %d of the %d messages in time", len(found), len(bodies))
		}
		time.Sleep(50 * time.Millisecond)
		for subject, id := range subjects(ctx, t, conn, ids) {
			if _, ok := bodies[subject]; ok {
				found[subject] = id
			}
		}
	}
	mailboxes := mailbusv1.NewMailboxServiceClient(conn)
	for subject, id := range found {
		if got := raw(ctx, t, mailboxes, id); !bytes.Equal(got, bodies[subject]) {
			t.Errorf("%s: stored %d octets that differ from the %d sent", subject, len(got), len(bodies[subject]))
		}
	}
	if n := lis.accepted.Load(); n != 1 {
		t.Errorf("the store's port accepted %d connections; want 1, the test's own (the fetchers dialed it?)", n)
	}
}

// subjects lists the messages of the accounts' mailboxes by subject.
func subjects(ctx context.Context, t *testing.T, conn grpc.ClientConnInterface, accountIDs []string) map[string]string {
	t.Helper()
	mailboxes := mailbusv1.NewMailboxServiceClient(conn)
	out := map[string]string{}
	for _, acct := range accountIDs {
		boxes, err := mailboxes.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: acct})
		if err != nil {
			continue
		}
		for _, b := range boxes.Mailboxes {
			msgs, err := mailboxes.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: b.Id, PageSize: 1000})
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs.Messages {
				out[m.GetEnvelope().GetSubject()] = m.Id
			}
		}
	}
	return out
}

func raw(ctx context.Context, t *testing.T, mailboxes mailbusv1.MailboxServiceClient, id string) []byte {
	t.Helper()
	stream, err := mailboxes.GetRawMessage(ctx, &mailbusv1.GetRawMessageRequest{MessageId: id})
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp.Data...)
	}
}
