package cli

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/demo"
)

// heldMessage is a message as an IMAP server holds it.
type heldMessage struct {
	messageID string
	flags     []string
}

// imapHeld reads a folder over IMAPS, as any client would.
func imapHeld(t *testing.T, s *dovecottest.Server, user, password, folder string) map[string]heldMessage {
	t.Helper()
	c, err := imapclient.DialTLS(s.IMAPSAddr(), &imapclient.Options{TLSConfig: s.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user, password).Wait(); err != nil {
		t.Fatal(err)
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]heldMessage{}
	if sel.NumMessages == 0 {
		return out
	}
	var set imap.SeqSet
	set.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(set, &imap.FetchOptions{Flags: true, Envelope: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		h := heldMessage{messageID: m.Envelope.MessageID}
		for _, f := range m.Flags {
			if !strings.EqualFold(string(f), `\Recent`) {
				h.flags = append(h.flags, string(f))
			}
		}
		out[h.messageID] = h
	}
	return out
}

// TestServeDovecot runs the user's path against a real server: an IMAP
// account over implicit TLS whose self-signed certificate parks it until
// `account update --insecure-skip-verify`, a POP3 account over STARTTLS,
// listings that match what Dovecot holds (special-use roles included), and
// a flag change and a move made with the CLI that reach Dovecot.
func TestServeDovecot(t *testing.T) {
	s := dovecottest.Start(t, nil)
	const imapUser, popUser, password = "carol", "dave", "dovecot-pw"
	for _, u := range []string{imapUser, popUser} {
		if err := s.AddUser(u, password); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range demo.IMAPMessages() {
		if err := s.Deliver(imapUser, m.Folder, m.Raw, m.Flags...); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range demo.POP3Messages() {
		if err := s.Deliver(popUser, "INBOX", m.Raw); err != nil {
			t.Fatal(err)
		}
	}

	c, _, _ := startServe(t)
	pw := t.TempDir() + "/pw"
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok("account", "add", "--name", "work", "--protocol", "imap", "--host", "127.0.0.1", "--port", fmt.Sprint(s.IMAPSPort),
		"--security", "tls", "--username", imapUser, "--password-file", pw)
	c.ok("account", "add", "--name", "pop", "--protocol", "pop3", "--host", "127.0.0.1", "--port", fmt.Sprint(s.POP3Port),
		"--security", "starttls", "--insecure-skip-verify", "--username", popUser, "--password-file", pw)

	// The self-signed certificate parks the IMAP account, and says what to
	// do about it.
	eventually(t, "the certificate parks the account", func() error {
		r := c.ok("account", "show", "work")
		if !strings.Contains(r.stdout, "state:      parked") || !strings.Contains(r.stdout, "--insecure-skip-verify") {
			return fmt.Errorf("%s", r.stdout)
		}
		return nil
	})
	c.ok("account", "update", "work", "--insecure-skip-verify")
	waitIdle(t, c, "work")
	waitIdle(t, c, "pop")

	// Mailboxes with their special-use roles.
	roles := map[string]mailbusv1.MailboxRole{}
	for _, m := range jsonLines(t, c.ok("mailbox", "list", "--account", "work", "--json").stdout, func() *mailbusv1.Mailbox { return &mailbusv1.Mailbox{} }) {
		roles[m.Name] = m.Role
	}
	for name, role := range map[string]mailbusv1.MailboxRole{
		"INBOX": mailbusv1.MailboxRole_MAILBOX_ROLE_INBOX, "Sent": mailbusv1.MailboxRole_MAILBOX_ROLE_SENT,
		"Archive": mailbusv1.MailboxRole_MAILBOX_ROLE_ARCHIVE, "Drafts": mailbusv1.MailboxRole_MAILBOX_ROLE_DRAFTS,
		"Trash": mailbusv1.MailboxRole_MAILBOX_ROLE_TRASH,
	} {
		if roles[name] != role {
			t.Errorf("mailbox %s: role %v, want %v (all: %v)", name, roles[name], role, roles)
		}
	}

	// Each folder lists what Dovecot holds, with the same flags.
	for _, folder := range []string{"INBOX", "Sent", "Archive", "Drafts"} {
		held := imapHeld(t, s, imapUser, password, folder)
		listed := jsonLines(t, c.ok("message", "list", "--account", "work", "--mailbox", folder, "--limit", "0", "--json").stdout,
			func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} })
		if len(listed) != len(held) || len(held) == 0 {
			t.Fatalf("%s: %d listed, Dovecot holds %d", folder, len(listed), len(held))
		}
		for _, m := range listed {
			h, ok := held[m.GetEnvelope().GetMessageId()]
			if !ok {
				t.Fatalf("%s: %s listed, not on the server", folder, m.GetEnvelope().GetMessageId())
			}
			if !slices.Equal(sortedFlags(m.Flags), sortedFlags(h.flags)) {
				t.Errorf("%s %s: flags %v, Dovecot has %v", folder, h.messageID, m.Flags, h.flags)
			}
		}
	}
	popListed := jsonLines(t, c.ok("message", "list", "--account", "pop", "--limit", "0", "--json").stdout,
		func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} })
	var popWant []string
	for _, m := range demo.POP3Messages() {
		popWant = append(popWant, m.MessageID)
	}
	sort.Strings(popWant)
	if got := messageIDsOf(popListed); !slices.Equal(got, popWant) {
		t.Fatalf("POP3 over STARTTLS: %v, want %v", got, popWant)
	}

	// A flag change and a move, watched, reach Dovecot.
	acct := accountJSON(t, c, "work")
	inbox := jsonLines(t, c.ok("message", "list", "--account", "work", "--limit", "2", "--json").stdout,
		func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} })
	flagged, moved := inbox[0], inbox[1]
	watch := c.start("watch", "--account", "work", "--since", fmt.Sprint(acct.State), "--json", "--no-status")
	c.ok("flag", "add", "--account", "work", flagged.Id, "flagged", "$Important")
	c.ok("message", "move", moved.Id, "--to", "Archive")
	watch.waitLine("the flag change", func(l string) bool {
		return strings.Contains(l, "messageUpdated") && strings.Contains(l, `"id":"`+flagged.Id+`"`) && strings.Contains(l, "$Important")
	})
	watch.waitLine("the move", func(l string) bool {
		return strings.Contains(l, "messageUpdated") && strings.Contains(l, `"id":"`+moved.Id+`"`) && strings.Contains(l, "previousMailboxId")
	})
	watch.interrupt()
	eventually(t, "the flags on Dovecot", func() error {
		h := imapHeld(t, s, imapUser, password, "INBOX")[flagged.GetEnvelope().GetMessageId()]
		if !slices.Contains(h.flags, `\Flagged`) || !slices.Contains(h.flags, "$Important") {
			return fmt.Errorf("flags %v", h.flags)
		}
		return nil
	})
	eventually(t, "the move on Dovecot", func() error {
		if _, ok := imapHeld(t, s, imapUser, password, "Archive")[moved.GetEnvelope().GetMessageId()]; !ok {
			return fmt.Errorf("not in Archive")
		}
		if _, ok := imapHeld(t, s, imapUser, password, "INBOX")[moved.GetEnvelope().GetMessageId()]; ok {
			return fmt.Errorf("still in INBOX")
		}
		return nil
	})
}
