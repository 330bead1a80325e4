package cli

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/webhooksig"
)

// readmeGoBlock returns the ```go block of README.md that contains marker.
func readmeGoBlock(t *testing.T, marker string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, block := range strings.Split(string(b), "```go\n")[1:] {
		code, _, ok := strings.Cut(block, "\n```")
		if ok && strings.Contains(code, marker) {
			return code + "\n"
		}
	}
	t.Fatalf("README.md has no ```go block with %q", marker)
	return ""
}

// TestREADMEWebhookReceiver builds the receiver README.md shows (section
// "A receiver that checks the signature") and checks it against the
// webhooks service's signer, pkg/webhooksig: a request it signed is
// accepted and printed, also when the right signature is the second of a
// rotation; a wrong secret, a changed body, an old time and no header are
// refused.
func TestREADMEWebhookReceiver(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(readmeGoBlock(t, "Command hookrecv")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module hookrecv\n\ngo 1.26\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "hookrecv")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("the README's receiver does not build: %v\n%s", err, out)
	}

	const secret = "whsec_0123456789abcdef0123456789abcdef"
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	recv := exec.CommandContext(ctx, bin)
	recv.Env = append(os.Environ(), "MAILBUS_WEBHOOK_SECRET="+secret, "LISTEN=127.0.0.1:0")
	stdout, stderr := newLineBuffer(), newLineBuffer()
	recv.Stdout, recv.Stderr = stdout, stderr
	if err := recv.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { recv.Wait(); close(done) }()
	t.Cleanup(func() { recv.Process.Kill(); <-done })
	var url string
	eventually(t, "the receiver's line naming its address", func() error {
		lines, _ := stderr.lines(0)
		for _, l := range lines {
			if _, addr, ok := strings.Cut(l, "listening on "); ok {
				url = "http://" + addr + "/hooks/mailbus"
				return nil
			}
		}
		select {
		case <-done:
			t.Fatalf("the receiver exited: %q", lines)
		default:
		}
		return fmt.Errorf("stderr %q", lines)
	})

	body := []byte(`{"kind":"message.created","event":{"id":"ev-1"}}`)
	now := time.Now()
	for _, tc := range []struct {
		name   string
		header string
		body   []byte
		want   int
	}{
		{"signed", webhooksig.Value(now, body, []byte(secret)), body, http.StatusNoContent},
		{"rotation, the old secret first", webhooksig.Value(now, body, []byte("whsec_the-previous-secret-000000"), []byte(secret)), body, http.StatusNoContent},
		{"wrong secret", webhooksig.Value(now, body, []byte("whsec_not-the-secret-0000000000")), body, http.StatusUnauthorized},
		{"changed body", webhooksig.Value(now, body, []byte(secret)), []byte(`{"kind":"message.deleted"}`), http.StatusUnauthorized},
		{"ten minutes old", webhooksig.Value(now.Add(-10*time.Minute), body, []byte(secret)), body, http.StatusUnauthorized},
		{"no signature", "", body, http.StatusUnauthorized},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Mailbus-Event-Kind", "message.created")
		req.Header.Set("Mailbus-Event-Id", "ev-1")
		if tc.header != "" {
			req.Header.Set(webhooksig.Header, tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	want := fmt.Sprintf("message.created ev-1 %s", body)
	eventually(t, "the accepted requests printed", func() error {
		lines, _ := stdout.lines(0)
		if len(lines) != 2 || lines[0] != want || lines[1] != want {
			return fmt.Errorf("printed %q, want %q twice", lines, want)
		}
		return nil
	})
}
