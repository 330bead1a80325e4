package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// waitLong bounds waiting for something that must happen; no test asserts
// on elapsed time except that an unreachable store is reported promptly.
const waitLong = 90 * time.Second

// raceEnv keeps the race detector (the binary is built with -race) from
// sleeping a second at every exit, and fails a command on a race.
const raceEnv = "GORACE=atexit_sleep_ms=0 halt_on_error=1"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// mailbusBin builds the mailbus binary once per test run.
func mailbusBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "mailbus-bin-")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "mailbus")
		args := []string{"build", "-o", binPath}
		if raceBuild {
			args = append(args, "-race")
		}
		cmd := exec.Command("go", append(args, "github.com/mailbus/mailbus/services/mailbus/cmd/mailbus")...)
		cmd.Dir = ".."
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer is a bytes.Buffer safe for a process's writes and the test's
// reads at once.
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

// result is a finished command.
type result struct {
	args           []string
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("mailbus %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// cli runs the mailbus binary to completion.
type cli struct {
	t      *testing.T
	bin    string
	server string
	env    []string
	// dir is the working directory of the commands; empty: the test's.
	dir string
}

func (c *cli) run(args ...string) result {
	return c.runIn("", args...)
}

func (c *cli) runIn(stdin string, args ...string) result {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "MAILBUS_SERVER="+c.server, raceEnv)
	cmd.Env = append(cmd.Env, c.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		c.t.Fatalf("mailbus %v: %v", args, err)
	}
	return r
}

// ok runs a command that must succeed.
func (c *cli) ok(args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != 0 {
		c.t.Fatalf("%s", r)
	}
	return r
}

// jsonLines decodes a --json output into messages made by newMsg.
func jsonLines[T proto.Message](t *testing.T, out string, newMsg func() T) []T {
	t.Helper()
	var msgs []T
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		m := newMsg()
		if err := protojson.Unmarshal([]byte(line), m); err != nil {
			t.Fatalf("not a protojson line: %v\n%s", err, line)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// proc is a mailbus process running in the background.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	stdout *lineBuffer
	stderr *syncBuffer
	done   chan struct{}
	err    error
}

func (c *cli) start(args ...string) *proc {
	c.t.Helper()
	p := &proc{t: c.t, stdout: newLineBuffer(), stderr: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(c.bin, args...)
	p.cmd.Dir = c.dir
	p.cmd.Env = append(os.Environ(), "MAILBUS_SERVER="+c.server, raceEnv)
	p.cmd.Env = append(p.cmd.Env, c.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	c.t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if c.t.Failed() {
			c.t.Logf("mailbus %s output:\n%s\nstderr:\n%s", strings.Join(args, " "), p.stdout, p.stderr)
		}
	})
	return p
}

// interrupt sends SIGINT and waits for the exit code.
func (p *proc) interrupt() int {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(waitLong):
		p.t.Fatalf("no exit after SIGINT\n%s", p.stderr)
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

// waitLine waits for an output line for which match is true and returns
// it.
func (p *proc) waitLine(what string, match func(string) bool) string {
	p.t.Helper()
	deadline := time.After(waitLong)
	for i := 0; ; {
		lines, changed := p.stdout.lines(i)
		for _, l := range lines {
			i++
			if match(l) {
				return l
			}
		}
		select {
		case <-changed:
		case <-p.done:
			if lines, _ := p.stdout.lines(i); len(lines) > 0 {
				continue
			}
			p.t.Fatalf("process exited (%v) before %s\nstdout:\n%s\nstderr:\n%s", p.err, what, p.stdout, p.stderr)
		case <-deadline:
			p.t.Fatalf("no %s in time\nstdout:\n%s\nstderr:\n%s", what, p.stdout, p.stderr)
		}
	}
}

// lineBuffer collects a process's output and wakes readers on new lines.
type lineBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	all     []string
	changed chan struct{}
}

func newLineBuffer() *lineBuffer { return &lineBuffer{changed: make(chan struct{})} }

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	grew := false
	for {
		line, err := b.buf.ReadString('\n')
		if err == io.EOF {
			// Keep the partial line for the next write.
			b.buf.Reset()
			b.buf.WriteString(line)
			break
		}
		b.all = append(b.all, strings.TrimRight(line, "\r\n"))
		grew = true
	}
	if grew {
		close(b.changed)
		b.changed = make(chan struct{})
	}
	return len(p), nil
}

// lines returns the lines from index i on and a channel closed when more
// arrive.
func (b *lineBuffer) lines(i int) ([]string, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.all[i:]...), b.changed
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.all, "\n") + "\n" + b.buf.String()
}

// eventually retries f until it returns nil or waitLong passes.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func decodeJSON(t *testing.T, s string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%v: %s", err, s)
	}
}
