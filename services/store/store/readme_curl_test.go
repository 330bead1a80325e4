//go:build unix

package store_test

import (
	"bufio"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// readmeCurlSection is the README section whose curl commands
// TestREADMECurl runs.
const readmeCurlSection = "### Over HTTP: Connect, gRPC-Web, curl"

// readmeCodeBlocks returns the fenced code blocks of the README section
// headed heading, each as its lines.
func readmeCodeBlocks(t *testing.T, heading string) [][]string {
	t.Helper()
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	_, section, ok := strings.Cut(string(readme), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("README has no section %q", heading)
	}
	var blocks [][]string
	var cur []string
	in := false
	for line := range strings.SplitSeq(section, "\n") {
		switch {
		case strings.HasPrefix(line, "#") && !in: // the next heading
			return blocks
		case strings.HasPrefix(line, "```") && !in:
			in, cur = true, nil
		case strings.HasPrefix(line, "```"):
			in = false
			blocks = append(blocks, cur)
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

// joinContinued joins shell lines ending in a backslash with the next.
func joinContinued(lines []string) []string {
	var out []string
	pending := ""
	for _, line := range lines {
		if s, ok := strings.CutSuffix(line, `\`); ok {
			pending += s
			continue
		}
		out = append(out, pending+line)
		pending = ""
	}
	return out
}

// TestREADMECurl runs the README's curl commands (section "Over HTTP:
// Connect, gRPC-Web, curl") with the real curl and bash against a running
// store, the address, ids and token replaced by the test store's (TOKEN is
// a device token of the account, as `mailbus token create` makes), and
// checks each answer.
func TestREADMECurl(t *testing.T) {
	for _, tool := range []string{"curl", "bash", "sed"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatalf("%s is missing: %v", tool, err)
			}
			t.Skipf("%s is missing (install it to run this test): %v", tool, err)
		}
	}
	f := newAuthFixture(t, dbtest.Backends()[0])
	e := f.e
	blocks := readmeCodeBlocks(t, readmeCurlSection)
	if len(blocks) < 2 {
		t.Fatalf("README section %q: %d code blocks, want the curl calls and the WatchChanges one", readmeCurlSection, len(blocks))
	}
	replacer := strings.NewReplacer(
		"http://127.0.0.1:7400", "http://"+e.addr,
		`"accountId":"1"`, `"accountId":"`+f.a.account+`"`,
		`"mailboxId":"1"`, `"mailboxId":"`+f.a.mailbox+`"`,
		`"messageIds":["9"]`, `"messageIds":["`+f.a.message+`"]`,
	)
	command := func(ctx context.Context, script string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, "bash", "-c", replacer.Replace(script))
		cmd.Env = append(os.Environ(), "TOKEN="+f.deviceA)
		// The group, so that cancelling kills curl too, not only bash.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 10 * time.Second
		return cmd
	}

	// The first block: variables, then one curl call a line.
	var prelude []string
	answers := map[string][]byte{}
	for _, line := range joinContinued(blocks[0]) {
		switch {
		case strings.HasPrefix(line, "TOKEN="):
			if !strings.Contains(line, "mailbus token create") {
				t.Fatalf("README: the token line %q no longer creates a token with the CLI: update this test", line)
			}
		case strings.HasPrefix(line, "#"), strings.TrimSpace(line) == "":
		case strings.HasPrefix(line, "curl "):
			procedure := line[strings.LastIndex(line, "/mailbus.v1.")+1:]
			out, err := command(callCtx(t), strings.Join(append(prelude, line), "\n")).Output()
			if err != nil {
				t.Fatalf("README: %s: %v", line, err)
			}
			answers[procedure] = out
		default:
			prelude = append(prelude, line)
		}
	}
	type summary struct {
		ID    string   `json:"id"`
		Flags []string `json:"flags"`
	}
	tests := []struct {
		procedure string
		check     func(t *testing.T, body []byte)
	}{
		{"mailbus.v1.AccountService/ListAccounts", func(t *testing.T, body []byte) {
			var resp struct {
				Accounts []struct {
					ID string `json:"id"`
				} `json:"accounts"`
			}
			if err := json.Unmarshal(body, &resp); err != nil || len(resp.Accounts) != 1 || resp.Accounts[0].ID != f.a.account {
				t.Errorf("answer %s (%v), want account %s only", body, err, f.a.account)
			}
		}},
		{"mailbus.v1.MailboxService/ListMessages", func(t *testing.T, body []byte) {
			var resp struct {
				Messages []summary `json:"messages"`
				State    string    `json:"state"`
			}
			if err := json.Unmarshal(body, &resp); err != nil || len(resp.Messages) != 1 || resp.Messages[0].ID != f.a.message || resp.State == "" {
				t.Errorf("answer %s (%v), want message %s and the state", body, err, f.a.message)
			}
		}},
		{"mailbus.v1.SyncService/GetChanges", func(t *testing.T, body []byte) {
			var resp struct {
				NewState          string   `json:"newState"`
				CreatedMessageIDs []string `json:"createdMessageIds"`
			}
			if err := json.Unmarshal(body, &resp); err != nil || resp.NewState == "" || !slices.Contains(resp.CreatedMessageIDs, f.a.message) {
				t.Errorf("answer %s (%v), want newState and message %s created", body, err, f.a.message)
			}
		}},
		{"mailbus.v1.MailboxService/UpdateFlags", func(t *testing.T, body []byte) {
			var resp struct {
				Messages []summary `json:"messages"`
			}
			if err := json.Unmarshal(body, &resp); err != nil || len(resp.Messages) != 1 || !slices.Contains(resp.Messages[0].Flags, `\Flagged`) {
				t.Errorf("answer %s (%v), want message %s with \\Flagged", body, err, f.a.message)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.procedure, func(t *testing.T) {
			body, ok := answers[tt.procedure]
			if !ok {
				t.Fatalf("README runs no curl call of %s (ran %v)", tt.procedure, slices.Sorted(maps.Keys(answers)))
			}
			tt.check(t, body)
		})
	}

	// The second block: WatchChanges with Connect's streaming JSON. The
	// answers are read until caught up, then curl is stopped.
	t.Run("mailbus.v1.SyncService/WatchChanges", func(t *testing.T) {
		script := strings.Join(blocks[1], "\n")
		if !strings.Contains(script, "/mailbus.v1.SyncService/WatchChanges") {
			t.Fatalf("README's second block %q does not call WatchChanges", script)
		}
		ctx, cancel := context.WithCancel(callCtx(t))
		defer cancel()
		cmd := command(ctx, script)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() {
			cancel()
			_ = cmd.Wait() // killed
		}()
		r := bufio.NewReader(stdout)
		events := 0
		for {
			flags, data, err := readEnvelope(r)
			if err != nil {
				t.Fatalf("WatchChanges after %d events: %v", events, err)
			}
			if flags&0x02 != 0 {
				t.Fatalf("WatchChanges ended: %s", data)
			}
			var item struct {
				Event *struct {
					AccountID string `json:"accountId"`
				} `json:"event"`
				CaughtUp bool `json:"caughtUp"`
			}
			if err := json.Unmarshal(data, &item); err != nil {
				t.Fatalf("WatchChanges item %q: %v", data, err)
			}
			if item.CaughtUp {
				break
			}
			if item.Event == nil || item.Event.AccountID != f.a.account {
				t.Fatalf("WatchChanges item %s, want an event of account %s or caughtUp", data, f.a.account)
			}
			events++
		}
		if events == 0 {
			t.Errorf("WatchChanges from state 0 replayed no event before caughtUp")
		}
	})
}
