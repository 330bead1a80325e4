package imapgw

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestPOP3AccountShared: a POP3 account is an IMAP INBOX; a folder one
// client creates and a message it moves there are seen by a second
// client, which learns of the move while it IDLEs; a sent copy appended
// by a client stays in the store.
func TestPOP3AccountShared(t *testing.T) {
	e := startEnv(t)
	resp, err := mailbusv1.NewAccountServiceClient(e.admin).CreateAccount(callCtx(t), &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "maildrop", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "pop.example.com", Port: 995,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "ann", Secret: "pw", Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_KEEP}})
	if err != nil {
		t.Fatal(err)
	}
	acct := resp.Account
	inbox := e.mailbox(acct.Id, "INBOX")
	msg := e.appendMsg(inbox.Id, testMail("from the maildrop"))
	phoneToken, _ := e.token(false, acct.Id)
	laptopToken, _ := e.token(false, acct.Id)
	gw := e.gateway(nil)

	expunged := make(chan uint32, 10)
	laptop := gw.login(t, "maildrop", laptopToken, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { expunged <- seq },
	}})
	if sel, err := laptop.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 1 {
		t.Fatalf("laptop SELECT INBOX: %v %v", sel, err)
	}
	idle, err := laptop.Idle()
	if err != nil {
		t.Fatal(err)
	}

	phone := gw.login(t, "maildrop", phoneToken, nil)
	if err := phone.Create("Receipts", nil).Wait(); err != nil {
		t.Fatalf("CREATE on a POP3 account: %v", err)
	}
	if _, err := phone.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	moved, err := phone.Move(imap.UIDSetNum(imap.UID(msg.ImapUid)), "Receipts").Wait()
	if err != nil {
		t.Fatalf("MOVE on a POP3 account: %v", err)
	}
	sent := "From: ann@example.com\r\nTo: shop@example.com\r\nSubject: thanks\r\n\r\nReceived.\r\n"
	app := phone.Append("Receipts", int64(len(sent)), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	app.Write([]byte(sent))
	app.Close()
	if _, err := app.Wait(); err != nil {
		t.Fatalf("APPEND on a POP3 account: %v", err)
	}

	select {
	case seq := <-expunged:
		if seq != 1 {
			t.Errorf("laptop: EXPUNGE %d, want 1", seq)
		}
	case <-time.After(waitFor):
		t.Fatal("laptop: no EXPUNGE while IDLE after the phone's move")
	}
	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	list, err := laptop.List("", "*", nil).Collect()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(list, func(l *imap.ListData) bool { return l.Mailbox == "Receipts" }) {
		t.Errorf("laptop LIST: %v", list)
	}
	sel, err := laptop.Select("Receipts", nil).Wait()
	if err != nil || sel.NumMessages != 2 {
		t.Fatalf("laptop SELECT Receipts: %+v %v", sel, err)
	}
	uids, err := laptop.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil || fmt.Sprint(uids.AllUIDs()[0]) != moved.DestUIDs.String() {
		t.Errorf("laptop sees UIDs %v, the phone's COPYUID said %v (%v)", uids.AllUIDs(), moved.DestUIDs, err)
	}
}
