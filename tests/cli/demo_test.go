package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemo starts `mailbus demo` with every port chosen by the test, waits
// for the suggestions it prints, and runs each suggested command exactly as
// printed: the one-shot ones must succeed, the live ones must print and
// stop cleanly on Ctrl-C.
//
// It runs the demo as make demo does, as ./bin/mailbus from the checkout's
// root (here a directory of the test's), and the suggestions run from there
// too, program included.
func TestDemo(t *testing.T) {
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(mailbusBin(t), filepath.Join(root, "bin", "mailbus")); err != nil {
		t.Fatal(err)
	}
	const program = "./bin/mailbus"
	c := &cli{t: t, bin: program, dir: root, server: freeAddr(t)}
	natsAddr := freeAddr(t)
	// The suggested commands name the server themselves.
	c.env = append(c.env, "MAILBUS_SERVER=127.0.0.1:1")
	// Without --data the demo keeps its data in a temporary directory that
	// it removes at exit.
	tmp := t.TempDir()
	c.env = append(c.env, "TMPDIR="+tmp)
	p := c.start("demo", "--listen", c.server, "--metrics-listen", freeAddr(t),
		"--nats-listen", natsAddr, "--imap-listen", freeAddr(t), "--pop3-listen", freeAddr(t), "--new-mail-every", "1s")
	p.waitLine("the end of the suggestions", func(l string) bool { return strings.HasPrefix(l, "This terminal keeps streaming") })

	out := p.stdout.String()
	for _, want := range []string{"Added account demo-imap", "Added account demo-pop3", "message.created", "security none", "Backend consumers on NATS nats://" + natsAddr, "`./bin/mailbus nats-user create --account demo-imap`"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	var oneShot, live [][]string
	inLive := false
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "Live (") {
			inLive = true
		}
		if !strings.HasPrefix(l, "  ") || strings.HasPrefix(l, "  #") || strings.TrimSpace(l) == "" {
			continue
		}
		// A command line: the program as the demo was started, then
		// arguments with nothing a shell would read differently.
		fields := strings.Fields(l)
		if fields[0] != program || strings.ContainsAny(l, "'\"$`\\;&|<>*?") {
			t.Errorf("suggestion %q: want %s and plain arguments", l, program)
			continue
		}
		args := fields[1:]
		if inLive {
			live = append(live, args)
		} else {
			oneShot = append(oneShot, args)
		}
	}
	if len(oneShot) < 10 || len(live) < 2 {
		t.Fatalf("suggestions: %d one-shot, %d live\n%s", len(oneShot), len(live), out)
	}
	for _, args := range oneShot {
		if !strings.Contains(strings.Join(args, " "), "--server "+c.server) {
			t.Errorf("suggestion %v does not name the server", args)
		}
		r := c.run(args...)
		if r.code != 0 || r.stdout == "" {
			t.Errorf("suggested command failed or printed nothing: %s", r)
		}
	}
	// The demo streamed the suggestions' changes as events.
	p.waitLine("the flag change as an event", func(l string) bool { return strings.Contains(l, "message.updated") && strings.Contains(l, `+\Flagged`) })
	p.waitLine("the move as an event", func(l string) bool { return strings.Contains(l, "moved INBOX -> Archive") })
	p.waitLine("the new mailbox as an event", func(l string) bool { return strings.Contains(l, "mailbox.created") && strings.Contains(l, "Projects") })

	// New mail on the demo IMAP server reaches the store through IDLE.
	delivered := p.waitLine("new mail delivered", func(l string) bool { return strings.Contains(l, "demo IMAP server: new mail in INBOX") })
	subject := delivered[strings.Index(delivered, `"`):]
	p.waitLine("the new mail as an event", func(l string) bool {
		return strings.Contains(l, "message.created") && strings.Contains(l, subject) && strings.Contains(l, "[upstream]")
	})

	for _, args := range live {
		w := c.start(args...)
		w.waitLine("output of "+strings.Join(args, " "), func(l string) bool { return strings.TrimSpace(l) != "" })
		if code := w.interrupt(); code != 0 {
			t.Errorf("%v: exit %d after Ctrl-C", args, code)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "mailbus-demo-*")); len(left) != 1 {
		t.Fatalf("demo data directories in TMPDIR while running: %v", left)
	}
	if code := p.interrupt(); code != 0 {
		t.Fatalf("demo exit %d after Ctrl-C\n%s", code, p.stderr)
	}
	if left, _ := filepath.Glob(filepath.Join(tmp, "mailbus-demo-*")); len(left) != 0 {
		t.Fatalf("the demo left its data directory behind: %v", left)
	}
}
