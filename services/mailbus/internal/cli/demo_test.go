package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// With --json the demo prints only events on standard output, one JSON
// object a line; its banners and suggestions go to standard error.
func TestDemoJSONOnlyJSONOnStdout(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--json", "--data", filepath.Join(t.TempDir(), "data"), "--listen", "127.0.0.1:0", "--metrics-listen", "-", "--gateway-listen", "127.0.0.1:0",
			"--imap-listen", "127.0.0.1:0", "--pop3-listen", "127.0.0.1:0", "--new-mail-every", "0"},
			IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) (string, bool) { return "", false }})
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(errb.String(), "This terminal keeps streaming") || !strings.Contains(out.String(), "messageCreated") {
		select {
		case code := <-done:
			t.Fatalf("demo ended with %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no suggestions and events\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("demo exit %d", code)
	}
	for _, want := range []string{"Added account demo-imap", "mailbus status"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("standard error lacks %q", want)
		}
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	for _, l := range lines {
		var ev mailbusv1.Event
		if err := protojson.Unmarshal([]byte(l), &ev); err != nil {
			t.Errorf("standard output line is not an event: %q: %v", l, err)
		}
	}
	t.Logf("%d events on standard output", len(lines))
}

// The demo hands the accounts it adds to its watch, which streams their
// initial sync's events at once: with a watch that would list the accounts
// again only after an hour, the events still come (before, they waited
// for that list).
func TestDemoWatchesItsAccountsAtOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"demo", "--json", "--data", filepath.Join(t.TempDir(), "data"), "--listen", "127.0.0.1:0", "--metrics-listen", "-", "--gateway-listen", "127.0.0.1:0",
			"--imap-listen", "127.0.0.1:0", "--pop3-listen", "127.0.0.1:0", "--new-mail-every", "0"},
			IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(string) (string, bool) { return "", false }, watchRefresh: time.Hour})
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for !strings.Contains(out.String(), "messageCreated") {
		select {
		case code := <-done:
			t.Fatalf("demo ended with %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no message.created event of the demo accounts\nstdout:\n%s\nstderr:\n%s", out.String(), errb.String())
		}
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("demo exit %d", code)
	}
}
