package mailbus_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// TestIMAPGateway: with IMAPListen, serve runs the IMAP gateway in front
// of its store: a mail client logs in with an account's name and a device
// token and reads a message the API appended; without it, none runs.
func TestIMAPGateway(t *testing.T) {
	r := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data"), IMAPListen: "127.0.0.1:0"})
	if r.info.IMAPAddr == "" || r.info.IMAPTLS {
		t.Fatalf("info: IMAP %q TLS %v", r.info.IMAPAddr, r.info.IMAPTLS)
	}
	conn := dial(t, r.info)
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	acct, err := mailbusv1.NewAccountServiceClient(conn).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "work", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "127.0.0.1", Port: 1, Security: mailbusv1.Security_SECURITY_NONE,
		Username: "ann", Secret: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	boxes, err := mailbusv1.NewMailboxServiceClient(conn).ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: acct.Account.Id})
	if err != nil || len(boxes.Mailboxes) == 0 {
		t.Fatalf("mailboxes: %v %v", boxes, err)
	}
	raw := "From: a@example.com\r\nSubject: through the gateway\r\n\r\nhello\r\n"
	if _, err := mailbusv1.NewMailboxServiceClient(conn).AppendMessage(ctx, &mailbusv1.AppendMessageRequest{
		MailboxId: boxes.Mailboxes[0].Id, Raw: []byte(raw), DeviceId: "test"}); err != nil {
		t.Fatal(err)
	}
	tok, err := mailbusv1.NewTokenServiceClient(conn).CreateToken(ctx, &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: "mail client", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{acct.Account.Id}}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(r.info.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("work", tok.Secret).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil || len(msgs) != 1 || string(msgs[0].FindBodySection(&imap.FetchItemBodySection{})) != raw {
		t.Fatalf("FETCH: %v %v", msgs, err)
	}

	off := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data")})
	if off.info.IMAPAddr != "" {
		t.Errorf("without IMAPListen: IMAP %q", off.info.IMAPAddr)
	}
}
