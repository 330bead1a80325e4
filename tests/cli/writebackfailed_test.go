package cli

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestMailboxNamesOnDovecot: a mailbox name that is not a proper name by
// the delimiter (Trailing/, a//b, a/../b) is refused by the CLI with the
// reason and never reaches the server; a name the store takes but Dovecot
// refuses (a level beginning with '~', a level longer than its 255 bytes)
// is not reverted silently: `mailbus watch` shows a writeback.failed line
// naming the mailbox and Dovecot's reason, and the mailbox leaves the
// store.
func TestMailboxNamesOnDovecot(t *testing.T) {
	s := dovecottest.Start(t, nil)
	const user, password = "erin", "dovecot-pw"
	if err := s.AddUser(user, password); err != nil {
		t.Fatal(err)
	}
	c, _, _ := startServe(t)
	pw := t.TempDir() + "/pw"
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	c.ok("account", "add", "--name", "work", "--protocol", "imap", "--host", "127.0.0.1", "--port", fmt.Sprint(s.IMAPSPort),
		"--security", "tls", "--insecure-skip-verify", "--username", user, "--password-file", pw)
	waitIdle(t, c, "work")

	for _, c2 := range []struct{ name, reason string }{
		{"Trailing/", "ends with the hierarchy delimiter"},
		{"a//b", "empty level"},
		{"a/../b", `".." level`},
	} {
		r := c.run("mailbox", "create", "--account", "work", c2.name)
		if r.code == 0 || !strings.Contains(r.stderr, c2.reason) {
			t.Errorf("mailbox create %q: want a refusal saying %q\n%s", c2.name, c2.reason, r)
		}
	}

	acct := accountJSON(t, c, "work")
	watch := c.start("watch", "--account", "work", "--since", fmt.Sprint(acct.State), "--no-status")
	long := strings.Repeat("x", 300)
	for _, refused := range []struct{ name, reason string }{
		{"~tilde", "Begins with '~'"},
		{long, "Mailbox name too long"},
	} {
		c.ok("mailbox", "create", "--account", "work", refused.name)
		watch.waitLine("writeback.failed for "+refused.name[:6], func(l string) bool {
			return strings.Contains(l, "writeback.failed") && strings.Contains(l, fmt.Sprintf("mailbox %q", refused.name)) &&
				strings.Contains(l, refused.reason)
		})
	}
	watch.interrupt()
	eventually(t, "the refused mailboxes leave the store", func() error {
		var names []string
		for _, m := range jsonLines(t, c.ok("mailbox", "list", "--account", "work", "--json").stdout, func() *mailbusv1.Mailbox { return &mailbusv1.Mailbox{} }) {
			names = append(names, m.Name)
		}
		for _, n := range []string{"~tilde", long, "Trailing/", "Trailing", "a//b", "a/../b"} {
			if slices.Contains(names, n) {
				return fmt.Errorf("%.20q still listed: %v", n, names)
			}
		}
		return nil
	})
}
