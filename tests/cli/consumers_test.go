package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestDocumentedConsumers (issue 13): what the README shows a backend
// developer works against a running mailbus serve, with users made by
// nats-user create while serve runs: the Go and Node consumers of
// examples/ print the events of the durable consumer of an all-accounts
// user as JSON, and the README's nats CLI command prints live events as
// JSON through mailbus events decode.
func TestDocumentedConsumers(t *testing.T) {
	c, _, natsAddr := startServe(t)
	natsURL := "nats://" + natsAddr
	c.env = append(c.env, "PW=x")
	addAccount := func(name string) string {
		c.ok("account", "add", "--name", name, "--protocol", "pop3", "--host", "127.0.0.1", "--port", "1",
			"--security", "none", "--username", "u", "--password-env", "PW")
		return accountJSON(t, c, name).Id
	}
	first := addAccount("consumers-1")
	second := addAccount("consumers-2")

	t.Run("go", func(t *testing.T) {
		user, password := createAllAccountsUser(t, c, "example-go")
		bin := filepath.Join(t.TempDir(), "consumer-go")
		build := exec.Command("go", "build", "-o", bin, ".")
		build.Dir = filepath.Join("..", "..", "examples", "consumer-go")
		build.Env = append(os.Environ(), "GOWORK=off")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("build examples/consumer-go: %v\n%s", err, out)
		}
		p := startCmd(t, exec.Command(bin), "NATS_URL="+natsURL, "NATS_USER="+user, "NATS_PASSWORD="+password)
		waitEvents(t, p, first, second)
	})

	t.Run("node", func(t *testing.T) {
		dir := filepath.Join("..", "..", "examples", "consumer-node")
		node, err := exec.LookPath("node")
		if err == nil {
			_, err = os.Stat(filepath.Join(dir, "node_modules"))
		}
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("node and examples/consumer-node/node_modules (.ci/run installs them): %v", err)
			}
			t.Skipf("needs node and `npm ci` in examples/consumer-node: %v", err)
		}
		user, password := createAllAccountsUser(t, c, "example-node")
		p := startCmd(t, exec.Command(node, filepath.Join(dir, "consumer.mjs")), "NATS_URL="+natsURL, "NATS_USER="+user, "NATS_PASSWORD="+password)
		waitEvents(t, p, first, second)
	})

	t.Run("nats CLI", func(t *testing.T) {
		natsCLI, err := exec.LookPath("nats")
		if err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("the nats CLI (.ci/run installs it): %v", err)
			}
			t.Skip("needs the nats CLI: go install github.com/nats-io/natscli/nats@v0.5.1")
		}
		_, password := createAllAccountsUser(t, c, "crm")
		readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
		if err != nil {
			t.Fatal(err)
		}
		command := readmeCommand(t, string(readme), "nats sub --server ")
		if !strings.Contains(command, "--user crm") || !strings.Contains(command, "nats://127.0.0.1:4222") {
			t.Fatalf("the README's nats command is not for user crm on nats://127.0.0.1:4222: %s", command)
		}
		command = strings.Replace(command, "nats://127.0.0.1:4222", natsURL, 1)
		// The README's command runs `nats` and `mailbus` from the PATH.
		path := filepath.Dir(natsCLI) + string(os.PathListSeparator) + filepath.Dir(c.bin) + string(os.PathListSeparator) + os.Getenv("PATH")
		p := startCmd(t, exec.Command("sh", "-c", "exec "+command), "NATS_PASSWORD="+password, "PATH="+path)
		// It reads live events only: make new ones until it has printed one.
		var created []string
		eventually(t, "an event printed by the README's nats command", func() error {
			created = append(created, addAccount(fmt.Sprintf("consumers-live-%d", len(created))))
			for _, l := range strings.Split(p.stdout.String(), "\n") {
				if ev := eventLine(l); ev != nil && slices.Contains(created, ev.AccountId) {
					return nil
				}
			}
			return fmt.Errorf("none yet; output so far:\n%s%s", p.stdout, p.stderr)
		})
	})
}

// createAllAccountsUser runs nats-user create --all-accounts and returns
// the user and the password it printed.
func createAllAccountsUser(t *testing.T, c *cli, user string) (string, string) {
	t.Helper()
	out := c.ok("nats-user", "create", "--all-accounts", "--user", user).stdout
	m := regexp.MustCompile(`password:\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no password in:\n%s", out)
	}
	return user, m[1]
}

// eventLine decodes a line of JSON as a mailbus.v1.Event; nil when it is
// not one.
func eventLine(l string) *mailbusv1.Event {
	ev := &mailbusv1.Event{}
	if strings.TrimSpace(l) == "" || protojson.Unmarshal([]byte(l), ev) != nil || ev.Id == "" {
		return nil
	}
	return ev
}

// waitEvents waits until a consumer has printed an event of each account.
func waitEvents(t *testing.T, p *proc, accounts ...string) {
	t.Helper()
	for _, id := range accounts {
		p.waitLine("a JSON event of account "+id, func(l string) bool {
			ev := eventLine(l)
			return ev != nil && ev.AccountId == id
		})
	}
}

// readmeCommand returns the README's command line that starts with
// prefix, its continuation lines joined.
func readmeCommand(t *testing.T, readme, prefix string) string {
	t.Helper()
	i := strings.Index(readme, "\n"+prefix)
	if i < 0 {
		t.Fatalf("the README has no command starting with %q", prefix)
	}
	var b strings.Builder
	for _, l := range strings.Split(readme[i+1:], "\n") {
		l = strings.TrimSpace(l)
		if cont, ok := strings.CutSuffix(l, `\`); ok {
			b.WriteString(cont)
			continue
		}
		b.WriteString(l)
		break
	}
	return b.String()
}

// startCmd runs a command other than mailbus in the background, its
// output collected like a mailbus process's, with env added to the
// test's environment; it is killed when the test ends.
func startCmd(t *testing.T, cmd *exec.Cmd, env ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: cmd, stdout: newLineBuffer(), stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	// A child that outlives the command (nats runs mailbus events decode
	// per message) must not hold Wait on the output pipes.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s output:\n%s\nstderr:\n%s", strings.Join(cmd.Args, " "), p.stdout, p.stderr)
		}
	})
	return p
}
