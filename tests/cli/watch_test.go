package cli

import (
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestWatchSurvivesARestart: a watch that has caught up keeps going when
// the store restarts, from the last state it saw: the change made after
// the restart arrives, and nothing is printed twice. A watch of every
// account and status --watch carry on too.
func TestWatchSurvivesARestart(t *testing.T) {
	c := &cli{t: t, bin: mailbusBin(t), server: freeAddr(t), env: []string{"PW=secret"}}
	data := filepath.Join(t.TempDir(), "data")
	c.env = append(c.env, "MAILBUS_DATA="+data)
	serve := func() *proc {
		p := c.start("serve", "--data", data, "--listen", c.server, "--metrics-listen", "-", "--imap-listen", "127.0.0.1:0", "--log-level", "warn")
		p.waitLine("the ready banner", func(l string) bool { return strings.HasPrefix(l, "mailbus is running") })
		return p
	}
	first := serve()
	// A POP3 account whose server is not there: its folders are local.
	c.ok("account", "add", "--name", "local", "--protocol", "pop3", "--host", "127.0.0.1", "--port", "1",
		"--security", "none", "--username", "u", "--password-env", "PW")
	st := c.start("status", "--watch")
	st.waitLine("the status table", func(l string) bool { return strings.Contains(l, "local:") })
	all := c.start("watch", "--no-status")
	all.waitLine("the watch of every account", func(l string) bool { return strings.HasPrefix(l, "Watching every account") })
	acct := accountJSON(t, c, "local")
	watch := c.start("watch", "--account", "local", "--since", fmt.Sprint(acct.State), "--json", "--no-status")
	created := func(name string) func(string) bool {
		return func(l string) bool {
			return strings.Contains(l, "mailboxCreated") && strings.Contains(l, fmt.Sprintf(`"name":%q`, name))
		}
	}
	c.ok("mailbox", "create", "--account", "local", "Before")
	watch.waitLine("the first mailbox", created("Before"))

	first.cmd.Process.Signal(syscall.SIGTERM)
	<-first.done
	eventually(t, "the watch notices", func() error {
		if !strings.Contains(watch.stderr.String(), "lost the store") {
			return fmt.Errorf("stderr: %s", watch.stderr)
		}
		return nil
	})
	st.waitLine("status --watch noticing the store is away", func(l string) bool { return strings.Contains(l, "lost the store") })
	serve()
	c.ok("mailbox", "create", "--account", "local", "After")
	watch.waitLine("the mailbox made after the restart", created("After"))
	// One line per event (the name appears twice in it: the payload's
	// mailbox and the event's).
	before := 0
	for line := range strings.Lines(watch.stdout.String()) {
		if created("Before")(line) {
			before++
		}
	}
	if before != 1 {
		t.Fatalf("the event before the restart printed %d times:\n%s", before, watch.stdout)
	}
	eventually(t, "the reconnect notice", func() error {
		if !strings.Contains(watch.stderr.String(), "reconnected") {
			return fmt.Errorf("stderr: %s", watch.stderr)
		}
		return nil
	})
	if code := watch.interrupt(); code != 0 {
		t.Fatalf("watch exit %d", code)
	}
	// The watch of every account kept going too.
	all.waitLine("the mailbox made after the restart, watching every account", func(l string) bool {
		return strings.Contains(l, "mailbox.created") && strings.Contains(l, "After")
	})
	if code := all.interrupt(); code != 0 {
		t.Fatalf("watch of every account: exit %d", code)
	}
	// status --watch said the store was away, and carried on.
	st.waitLine("status --watch after the restart", func(l string) bool { return strings.Contains(l, "the store answers again") })
	if code := st.interrupt(); code != 0 {
		t.Fatalf("status --watch: exit %d", code)
	}
}
