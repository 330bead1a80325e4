package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/services/mailbus/demo"
)

// apiNodeDir is the TypeScript example, from this package's directory.
const apiNodeDir = "../../examples/api-node"

// TestAPIExamples runs the API's example clients, examples/api-go (Go,
// connect-go) and examples/api-node (TypeScript, connect-node), each with
// JSON and with binary protobuf, against `mailbus serve` with an IMAP
// account synced from the demo IMAP server and a device token of it. All
// four must print the same: the account, its mailboxes, the INBOX's newest
// messages as the server holds them, and the account's events up to
// caught_up. With a wrong token both say the store refused it.
func TestAPIExamples(t *testing.T) {
	node := nodeExample(t)
	imapSrv, err := demo.StartIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer imapSrv.Close()
	c, _, _ := startServe(t, "--log-level", "warn")
	c.env = append(c.env, "IMAP_PW="+demo.IMAPPassword)
	c.ok("account", "add", "--name", "mail", "--protocol", "imap", "--host", "127.0.0.1",
		"--port", fmt.Sprint(imapSrv.Addr().Port), "--security", "none", "--username", demo.IMAPUser, "--password-env", "IMAP_PW")
	waitIdle(t, c, "mail")
	token := strings.TrimSpace(c.ok("token", "create", "--name", "examples", "--account", "mail").stdout)

	goBin := filepath.Join(t.TempDir(), "api-go")
	build := exec.Command("go", "build", "-o", goBin, "github.com/mailbus/mailbus/examples/api-go")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build examples/api-go: %v\n%s", err, out)
	}
	url := "http://" + c.server
	clients := []struct {
		name string
		argv []string
	}{
		{"api-go", []string{goBin, "-url", url, "-limit", "1000"}},
		{"api-go -json", []string{goBin, "-url", url, "-limit", "1000", "-json"}},
		{"api-node", []string{node, "dist/main.js", "--url", url, "--limit", "1000"}},
		{"api-node --binary", []string{node, "dist/main.js", "--url", url, "--limit", "1000", "--binary"}},
	}
	var first, firstName string
	for _, cl := range clients {
		stdout, stderr, err := runExample(t, cl.argv, token)
		if err != nil {
			t.Fatalf("%s: %v\nstdout:\n%s\nstderr:\n%s", cl.name, err, stdout, stderr)
		}
		if first == "" {
			first, firstName = stdout, cl.name
			continue
		}
		if stdout != first {
			t.Errorf("%s printed\n%s\n%s printed\n%s", cl.name, stdout, firstName, first)
		}
	}

	// What they printed is what the store and the IMAP server hold.
	for _, want := range []string{"accounts:\n", " mail " + demo.IMAPUser + "@127.0.0.1 IDLE\n", "mailboxes of mail:\n", "newest messages of INBOX:\n"} {
		if !strings.Contains(first, want) {
			t.Errorf("output lacks %q:\n%s", want, first)
		}
	}
	held, err := imapSrv.Messages("INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if len(held) == 0 {
		t.Fatal("the demo IMAP server's INBOX is empty")
	}
	for _, h := range held {
		if !strings.Contains(first, " "+h.Subject+"\n") {
			t.Errorf("the INBOX's message %q is not listed:\n%s", h.Subject, first)
		}
	}
	caughtUp := regexp.MustCompile(`(?m)^caught up after ([0-9]+) events$`).FindStringSubmatch(first)
	if caughtUp == nil || caughtUp[1] == "0" || !strings.Contains(first, " messageCreated\n") {
		t.Errorf("no events before caught_up:\n%s", first)
	}

	for _, cl := range []struct {
		name string
		argv []string
		want string
	}{
		{"api-go", []string{goBin, "-url", url}, "unauthenticated"},
		{"api-node", []string{node, "dist/main.js", "--url", url}, "Unauthenticated"},
	} {
		_, stderr, err := runExample(t, cl.argv, "mbt_not_a_token")
		if err == nil || !strings.Contains(stderr, cl.want) {
			t.Errorf("%s with a wrong token: %v, stderr %q, want a failure saying %s", cl.name, err, stderr, cl.want)
		}
	}
}

// nodeExample builds examples/api-node (npm ci there first, as .ci/run
// does) and returns the node program; outside CI it skips without Node or
// the example's node_modules.
func nodeExample(t *testing.T) string {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") == "true" {
			t.Fatal(what)
		}
		t.Skip(what)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("no node: install Node.js 20 or later")
	}
	tsc := filepath.Join(apiNodeDir, "node_modules", "typescript", "bin", "tsc")
	if _, err := os.Stat(tsc); err != nil {
		missing("examples/api-node has no node_modules: run npm ci there")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "node_modules/typescript/bin/tsc")
	cmd.Dir = apiNodeDir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build examples/api-node (tsc): %v\n%s", err, out)
	}
	return node
}

// runExample runs an example client (a node one in examples/api-node) with
// token as MAILBUS_TOKEN.
func runExample(t *testing.T, argv []string, token string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = apiNodeDir
	cmd.Env = append(os.Environ(), "MAILBUS_TOKEN="+token)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}
