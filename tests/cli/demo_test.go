package cli

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2/imapclient"
)

// TestDemo starts `mailbus demo` with every address on port 0, learns the
// ports from what it prints, waits for the suggestions it prints, and runs
// each suggested command exactly as printed: the one-shot ones must
// succeed, the live ones must print and stop cleanly on Ctrl-C.
//
// Port 0 lets the demo's own listeners take the ports: a port the test
// found free and released could be taken by another process (a client's
// outgoing connection, another test) before the demo bound it.
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
	// c.server is the demo's, once it says where it listens; the
	// suggested commands name it themselves.
	c := &cli{t: t, bin: program, dir: root}
	c.env = append(c.env, "MAILBUS_SERVER=127.0.0.1:1")
	// Without --data the demo keeps its data in a temporary directory that
	// it removes at exit.
	tmp := t.TempDir()
	c.env = append(c.env, "TMPDIR="+tmp)
	const anyPort = "127.0.0.1:0"
	p := c.start("demo", "--listen", anyPort, "--metrics-listen", anyPort, "--gateway-listen", anyPort,
		"--nats-listen", anyPort, "--imap-listen", anyPort, "--pop3-listen", anyPort, "--new-mail-every", "1s")
	banner := p.waitLine("the addresses", func(l string) bool { return strings.HasPrefix(l, "mailbus demo: the all-in-one server on ") })
	var imapAddr, pop3Addr string
	if _, err := fmt.Sscanf(strings.TrimSuffix(banner, "."), "mailbus demo: the all-in-one server on %s a demo IMAP server on %s and a demo POP3 server on %s",
		&c.server, &imapAddr, &pop3Addr); err != nil {
		t.Fatalf("banner %q: %v", banner, err)
	}
	c.server = strings.TrimSuffix(c.server, ",")
	for _, addr := range []string{c.server, imapAddr, pop3Addr} {
		mustBound(t, addr)
	}
	// The web console on the store's address (decision 0032).
	consoleLine := p.waitLine("the console's address", func(l string) bool { return strings.HasPrefix(l, "Web console: ") })
	if want := "Web console: http://" + c.server + "/ "; !strings.HasPrefix(consoleLine, want) {
		t.Errorf("console line %q: want it to start with %q", consoleLine, want)
	}
	checkConsolePage(t, "http://"+c.server+"/")
	p.waitLine("the end of the suggestions", func(l string) bool { return strings.HasPrefix(l, "This terminal keeps streaming") })

	out := p.stdout.String()
	// The initial sync's events stream beside the suggestions, not
	// necessarily before them: the demo prints those once the accounts
	// are idle, whatever its event stream has shown by then.
	p.waitLine("an initial sync's message as an event", func(l string) bool {
		return strings.Contains(l, "message.created") && strings.Contains(l, "[upstream]")
	})
	for _, want := range []string{"Added account demo-imap", "Added account demo-pop3", "security none", "Backend consumers on NATS nats://127.0.0.1:", "`./bin/mailbus nats-user create --account demo-imap`"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if _, rest, ok := strings.Cut(out, "Backend consumers on NATS nats://"); ok {
		mustBound(t, strings.Fields(rest)[0])
	}
	checkMailClientSettings(t, out)
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

// checkConsolePage checks that url serves the web console's page under a
// Content-Security-Policy.
func checkConsolePage(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("the console: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "mailbus console") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatalf("GET %s: %s, CSP %q\n%s", url, resp.Status, resp.Header.Get("Content-Security-Policy"), body)
	}
}

// mustBound checks that addr is a port some listener took (not port 0) and
// that it accepts connections.
func mustBound(t *testing.T, addr string) {
	t.Helper()
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		t.Fatalf("address %q: want the port the demo bound (%v)", addr, err)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("the demo's address %s: %v", addr, err)
	}
	conn.Close()
}

// checkMailClientSettings logs in to the IMAP gateway with the settings
// the demo printed, as each of its accounts, and selects the inbox.
func checkMailClientSettings(t *testing.T, out string) {
	t.Helper()
	var host, port string
	users := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 4 && f[0] == "IMAP" && f[1] == "server:":
			host, port = f[2], f[4]
		case len(f) == 5 && f[0] == "user" && f[1] == "name:":
			users[f[2]] = f[4]
		}
	}
	if host == "" || len(users) != 2 {
		t.Fatalf("mail-client settings: server %q, users %v\n%s", host, users, out)
	}
	for user, password := range users {
		c, err := imapclient.DialInsecure(net.JoinHostPort(host, port), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, password).Wait(); err != nil {
			t.Errorf("login as %s with the printed settings: %v", user, err)
		} else if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			t.Errorf("%s: SELECT INBOX: %v", user, err)
		}
		c.Close()
	}
}
