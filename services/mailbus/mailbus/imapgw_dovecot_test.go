package mailbus_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// requireTool returns the path of a real mail client; outside CI a
// missing one skips the test, in CI (CI=true) it fails.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (apt-get install %s): CI needs it", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}

func gatewayMail(subject string) string {
	return "From: Ann <ann@example.com>\r\nTo: bob@example.com\r\nSubject: " + subject + "\r\n" +
		"Message-ID: <" + strings.ReplaceAll(subject, " ", ".") + "@example.com>\r\n\r\nBody of " + subject + ".\r\n"
}

// TestIMAPGatewayUpstream runs serve with the gateway in front of an
// account synced from Dovecot: offlineimap3, a real client, pulls the
// inbox through the gateway, then sets a flag and deletes a message, and
// both reach Dovecot (through the store and imapsync's write-back); a
// message delivered to Dovecot reaches a client IDLEing on the gateway.
func TestIMAPGatewayUpstream(t *testing.T) {
	offlineimap := requireTool(t, "offlineimap", "offlineimap3")
	dc := dovecottest.Start(t, &dovecottest.Options{Users: []dovecottest.User{{Name: "ann", Password: "upstream-pw"}}})
	for i := range 3 {
		if err := dc.Deliver("ann", "INBOX", []byte(gatewayMail(fmt.Sprintf("upstream %d", i)))); err != nil {
			t.Fatal(err)
		}
	}
	r := start(t, mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data"), IMAPListen: "127.0.0.1:0"})
	conn := dial(t, r.info)
	ctx, cancel := context.WithTimeout(context.Background(), 5*waitLong)
	defer cancel()
	acct, err := mailbusv1.NewAccountServiceClient(conn).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "work", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: dc.Host, Port: uint32(dc.IMAPSPort),
		Security: mailbusv1.Security_SECURITY_TLS, InsecureSkipVerify: true, Username: "ann", Secret: "upstream-pw"}})
	if err != nil {
		t.Fatal(err)
	}
	mailboxes := mailbusv1.NewMailboxServiceClient(conn)
	var inbox *mailbusv1.Mailbox
	waitFor(t, "the initial sync", func() error {
		list, err := mailboxes.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: acct.Account.Id})
		if err != nil {
			return err
		}
		for _, m := range list.Mailboxes {
			if m.Role == mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX && m.TotalMessages == 3 {
				inbox = m
				return nil
			}
		}
		return fmt.Errorf("inbox not synced: %v", list.Mailboxes)
	})
	tok, err := mailbusv1.NewTokenServiceClient(conn).CreateToken(ctx, &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: "offlineimap", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{acct.Account.Id}}})
	if err != nil {
		t.Fatal(err)
	}

	// offlineimap pulls the inbox.
	dir := t.TempDir()
	host, port, _ := net.SplitHostPort(r.info.IMAPAddr)
	cfg := fmt.Sprintf(`[general]
accounts = gw
metadata = %[1]s/meta
ui = quiet

[Account gw]
localrepository = local
remoterepository = remote

[Repository local]
type = Maildir
localfolders = %[1]s/mail

[Repository remote]
type = IMAP
remotehost = %[2]s
remoteport = %[3]s
remoteuser = work
remotepass = %[4]s
ssl = no
starttls = no
folderfilter = lambda name: name == 'INBOX'
`, dir, host, port, tok.Secret)
	cfgFile := filepath.Join(dir, "offlineimaprc")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	runOfflineimap := func() {
		t.Helper()
		cmd := exec.CommandContext(ctx, offlineimap, "-c", cfgFile, "-o")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("offlineimap: %v\n%s", err, out)
		}
	}
	runOfflineimap()
	cur := filepath.Join(dir, "mail", "INBOX", "cur")
	newDir := filepath.Join(dir, "mail", "INBOX", "new")
	files := func() []string {
		var out []string
		for _, d := range []string{cur, newDir} {
			entries, _ := os.ReadDir(d)
			for _, e := range entries {
				out = append(out, filepath.Join(d, e.Name()))
			}
		}
		slices.Sort(out)
		return out
	}
	got := files()
	if len(got) != 3 {
		t.Fatalf("offlineimap pulled %d messages, want 3: %v", len(got), got)
	}

	// Locally: flag the first message, delete the second; offlineimap
	// pushes both through the gateway.
	flagged, deleted := got[0], got[1]
	if err := os.Rename(flagged, filepath.Join(cur, filepath.Base(strings.SplitN(flagged, ":2,", 2)[0])+":2,F")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(deleted); err != nil {
		t.Fatal(err)
	}
	runOfflineimap()
	waitFor(t, "the flag and the deletion upstream in Dovecot", func() error {
		uids, err := dc.ListUIDs("ann", "INBOX")
		if err != nil {
			return err
		}
		if len(uids) != 2 {
			return fmt.Errorf("Dovecot INBOX has %d messages", len(uids))
		}
		out, err := dc.Doveadm("search", "-u", "ann", "mailbox", "INBOX", "FLAGGED")
		if err != nil {
			return err
		}
		nFlagged := len(strings.Fields(out)) / 2 // "<mailbox guid> <uid>" per message
		if nFlagged != 1 {
			return fmt.Errorf("%d messages flagged in Dovecot", nFlagged)
		}
		return nil
	})

	// Push: a message delivered upstream reaches a client IDLEing on the
	// gateway (Dovecot -> imapsync IDLE -> store -> WatchChanges ->
	// gateway -> EXISTS).
	exists := make(chan uint32, 10)
	c, err := imapclient.DialInsecure(r.info.IMAPAddr, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Mailbox: func(d *imapclient.UnilateralDataMailbox) {
			if d.NumMessages != nil {
				exists <- *d.NumMessages
			}
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("work", tok.Secret).Wait(); err != nil {
		t.Fatal(err)
	}
	if sel, err := c.Select("INBOX", nil).Wait(); err != nil || sel.NumMessages != 2 {
		t.Fatalf("SELECT INBOX: %v %v", sel, err)
	}
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	// The store's commit, as a device sees it: the message.created event.
	state, err := mailbusv1.NewSyncServiceClient(conn).GetState(ctx, &mailbusv1.GetStateRequest{AccountId: acct.Account.Id})
	if err != nil {
		t.Fatal(err)
	}
	watch, err := mailbusv1.NewSyncServiceClient(conn).WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: acct.Account.Id, SinceState: state.State, SkipStatus: true})
	if err != nil {
		t.Fatal(err)
	}
	committed := make(chan time.Time, 1)
	go func() {
		for {
			r, err := watch.Recv()
			if err != nil {
				return
			}
			if r.GetEvent().GetMessageCreated() != nil {
				committed <- time.Now()
				return
			}
		}
	}()
	delivered := time.Now()
	if err := dc.Deliver("ann", "INBOX", []byte(gatewayMail("pushed"))); err != nil {
		t.Fatal(err)
	}
	select {
	case n := <-exists:
		if n != 3 {
			t.Errorf("EXISTS %d, want 3", n)
		}
		got := time.Now()
		select {
		case at := <-committed:
			t.Logf("upstream delivery to EXISTS on the gateway: %v (to the store's event %v, from there to EXISTS %v)", got.Sub(delivered), at.Sub(delivered), got.Sub(at))
		case <-time.After(waitLong):
			t.Fatal("no message.created event")
		}
	case <-time.After(waitLong):
		t.Fatal("no EXISTS while IDLE after a delivery upstream")
	}
	idle.Close()
	idle.Wait()
	_ = inbox
}
