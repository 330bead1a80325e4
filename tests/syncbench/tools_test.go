package syncbench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3"
)

// measure is one timed run of one tool.
type measure struct {
	wall time.Duration
	// cpu is user + system time of the tool's process and the children
	// it waited for (wait4's rusage); 0 when not measured (the bare
	// client runs in the benchmark process).
	cpu time.Duration
	// rssMB is the process's peak resident set size (ru_maxrss under GNU
	// time, or VmHWM); 0 when not measured.
	rssMB float64
}

// timeBin is GNU time. The peers run under it: their ru_maxrss as this
// process's children would not be their own, since Linux carries the
// peak of the memory a child was forked with (this process's) across
// exec, while GNU time's children are forked from a small process.
const timeBin = "/usr/bin/time"

// timed runs a program under GNU time and returns its wall time (as seen
// here), its CPU time (user + system of it and its children, from wait4)
// and its peak RSS, with its combined output.
func timed(ctx context.Context, dir, program string, args ...string) (measure, []byte, error) {
	usage := filepath.Join(dir, "rusage")
	cmd := exec.CommandContext(ctx, timeBin, append([]string{"-f", "%M %U %S", "-o", usage, program}, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	m := measure{wall: time.Since(start)}
	if err != nil {
		return m, out, fmt.Errorf("%s: %w\n%s", program, err, tail(out))
	}
	b, err := os.ReadFile(usage)
	if err != nil {
		return m, out, fmt.Errorf("%s: %w", timeBin, err)
	}
	var kb, user, sys float64
	if _, err := fmt.Sscan(string(b), &kb, &user, &sys); err != nil {
		return m, out, fmt.Errorf("%s output %q: %w", timeBin, b, err)
	}
	m.rssMB = kb / 1024
	m.cpu = time.Duration((user + sys) * float64(time.Second))
	return m, out, nil
}

// vmHWM is a running process's peak resident set size in MB (VmHWM).
func vmHWM(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// target is one account on the Dovecot server as a case sees it.
type target struct {
	protocol string // "imap" or "pop3"
	tls      bool   // implicit TLS (IMAPS)
	addr     string
	user     string
	messages int
	server   *dovecottest.Server
}

// bareIMAP fetches every message of every folder with one UID FETCH per
// folder (go-imap v2, BODY.PEEK[], streamed and discarded): the floor of
// what an IMAP client can do, storing nothing.
func bareIMAP(ctx context.Context, t target) (measure, error) {
	start := time.Now()
	var c *imapclient.Client
	var err error
	if t.tls {
		c, err = imapclient.DialTLS(t.addr, &imapclient.Options{TLSConfig: t.server.TLSConfig()})
	} else {
		c, err = imapclient.DialInsecure(t.addr, nil)
	}
	if err != nil {
		return measure{}, fmt.Errorf("dial %s: %w", t.addr, err)
	}
	defer c.Close()
	if err := c.Login(t.user, password).Wait(); err != nil {
		return measure{}, fmt.Errorf("login: %w", err)
	}
	got := 0
	for _, f := range folders {
		if err := ctx.Err(); err != nil {
			return measure{}, err
		}
		if _, err := c.Select(f.name, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
			return measure{}, fmt.Errorf("select %s: %w", f.name, err)
		}
		cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true,
			BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		for m := cmd.Next(); m != nil; m = cmd.Next() {
			for item := m.Next(); item != nil; item = m.Next() {
				if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
					if _, err := io.Copy(io.Discard, body.Literal); err != nil {
						return measure{}, fmt.Errorf("fetch %s: %w", f.name, err)
					}
				}
			}
			got++
		}
		if err := cmd.Close(); err != nil {
			return measure{}, fmt.Errorf("fetch %s: %w", f.name, err)
		}
	}
	if err := c.Logout().Wait(); err != nil {
		return measure{}, fmt.Errorf("logout: %w", err)
	}
	if got != t.messages {
		return measure{}, fmt.Errorf("bare IMAP fetch saw %d messages, want %d", got, t.messages)
	}
	return measure{wall: time.Since(start)}, nil
}

// barePOP3 retrieves every message with pkg/pop3 (UIDL, LIST, RETR
// pipelined) and discards it.
func barePOP3(ctx context.Context, t target) (measure, error) {
	start := time.Now()
	c, err := pop3.Dial(ctx, t.addr, &pop3.Options{Security: pop3.SecurityNone})
	if err != nil {
		return measure{}, fmt.Errorf("dial %s: %w", t.addr, err)
	}
	defer c.Close()
	if err := c.Login(ctx, pop3.Credentials{Username: t.user, Password: password}, pop3.MechanismAuto); err != nil {
		return measure{}, fmt.Errorf("login: %w", err)
	}
	if _, err := c.Uidl(ctx); err != nil {
		return measure{}, fmt.Errorf("uidl: %w", err)
	}
	list, err := c.List(ctx)
	if err != nil {
		return measure{}, fmt.Errorf("list: %w", err)
	}
	nums := make([]int, len(list))
	for i, e := range list {
		nums[i] = e.Number
	}
	err = c.RetrPipelined(ctx, nums, func(_ int, r io.Reader) error {
		_, err := io.Copy(io.Discard, r)
		return err
	})
	if err != nil {
		return measure{}, fmt.Errorf("retr: %w", err)
	}
	if err := c.Quit(ctx); err != nil {
		return measure{}, fmt.Errorf("quit: %w", err)
	}
	if len(list) != t.messages {
		return measure{}, fmt.Errorf("bare POP3 fetch saw %d messages, want %d", len(list), t.messages)
	}
	return measure{wall: time.Since(start)}, nil
}

// mbsync pulls the account into a Maildir under dir with FSync yes (its
// default: each message fsynced before it counts) or no.
func mbsync(ctx context.Context, t target, dir string, fsync bool) (measure, error) {
	host, port, _ := net.SplitHostPort(t.addr)
	ssl := "SSLType None"
	if t.tls {
		cert := filepath.Join(dir, "dovecot.pem")
		if err := os.WriteFile(cert, t.server.CACertPEM, 0o600); err != nil {
			return measure{}, err
		}
		ssl = "SSLType IMAPS\nCertificateFile " + cert
	}
	mode := map[bool]string{true: "yes", false: "no"}[fsync]
	conf := fmt.Sprintf(`FSync %s

IMAPAccount dc
Host %s
Port %s
User %s
Pass %s
%s
AuthMechs LOGIN

IMAPStore remote
Account dc

MaildirStore local
Path %s/mail/
Inbox %s/mail/INBOX
SubFolders Verbatim

Channel dc
Far :remote:
Near :local:
Patterns *
Create Near
Sync Pull
SyncState *
`, mode, host, port, t.user, password, ssl, dir, dir)
	if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o700); err != nil {
		return measure{}, err
	}
	rc := filepath.Join(dir, "mbsyncrc")
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		return measure{}, err
	}
	m, _, err := timed(ctx, dir, "mbsync", "-q", "-c", rc, "dc")
	if err != nil {
		return m, err
	}
	n, err := maildirCount(filepath.Join(dir, "mail"))
	if err != nil {
		return m, err
	}
	if n != t.messages {
		return m, fmt.Errorf("mbsync stored %d messages, want %d", n, t.messages)
	}
	return m, nil
}

// mpop fetches the maildrop in keep mode into a Maildir under dir (mpop
// fsyncs each delivered file; it has no setting for it).
func mpop(ctx context.Context, t target, dir string) (measure, error) {
	maildir := filepath.Join(dir, "Maildir")
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(maildir, sub), 0o700); err != nil {
			return measure{}, err
		}
	}
	host, port, _ := net.SplitHostPort(t.addr)
	rc := filepath.Join(dir, "mpoprc")
	conf := fmt.Sprintf(`defaults
tls off
auth user
keep on
uidls_file %s

account bench
host %s
port %s
user %s
password %s
delivery maildir %s
`, filepath.Join(dir, "uidls"), host, port, t.user, password, maildir)
	if err := os.WriteFile(rc, []byte(conf), 0o600); err != nil {
		return measure{}, err
	}
	m, _, err := timed(ctx, dir, "mpop", "--file="+rc, "--quiet", "bench")
	if err != nil {
		return m, err
	}
	n, err := maildirCount(maildir)
	if err != nil {
		return m, err
	}
	if n != t.messages {
		return m, fmt.Errorf("mpop stored %d messages, want %d", n, t.messages)
	}
	return m, nil
}

// maildirCount counts the message files in the new/ and cur/ directories
// under root.
func maildirCount(root string) (int, error) {
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			if p := filepath.Base(filepath.Dir(path)); p == "new" || p == "cur" {
				n++
			}
		}
		return nil
	})
	return n, err
}

// mailbusServe times the real all-in-one server: `mailbus serve --data
// dir/data` is started, the account added with `mailbus account add` as
// soon as the server is ready, and the clock stops when the account's
// status is idle after a successful pass with every message in the store.
// CPU and peak RSS are those of the serve process (the store, imapsync,
// pop3fetcher and the embedded NATS all run in it); the status poll adds a
// GetAccount call every 20 ms to its work.
func mailbusServe(ctx context.Context, bin string, t target, dir string) (measure, error) {
	data := filepath.Join(dir, "data")
	listen, err := freeAddr()
	if err != nil {
		return measure{}, err
	}
	var stderr bytes.Buffer
	serve := exec.Command(bin, "serve", "--data", data, "--listen", listen, "--metrics-listen", "-", "--imap-listen", "-", "--log-level", "warn")
	serve.Stderr = &stderr
	stdout, err := serve.StdoutPipe()
	if err != nil {
		return measure{}, err
	}
	start := time.Now()
	if err := serve.Start(); err != nil {
		return measure{}, fmt.Errorf("mailbus serve: %w", err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = serve.Process.Kill()
			_ = serve.Wait()
		}
	}()
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "mailbus is running") {
				ready <- nil
				_, _ = io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- errors.New("mailbus serve exited before it was ready")
	}()
	select {
	case err := <-ready:
		if err != nil {
			return measure{}, fmt.Errorf("%w: %s", err, stderr.String())
		}
	case <-time.After(2 * time.Minute):
		return measure{}, fmt.Errorf("mailbus serve not ready after 2 minutes: %s", stderr.String())
	}

	host, port, _ := net.SplitHostPort(t.addr)
	args := []string{"account", "add", "--server", listen, "--name", "bench", "--protocol", t.protocol,
		"--host", host, "--port", port, "--username", t.user, "--password-env", "SYNCBENCH_PW"}
	switch {
	case t.tls:
		// Dovecot's certificate is self-signed; mbsync pins it instead.
		args = append(args, "--security", "tls", "--insecure-skip-verify")
	default:
		args = append(args, "--security", "none")
	}
	add := exec.CommandContext(ctx, bin, args...)
	add.Env = append(os.Environ(), "MAILBUS_DATA="+data, "SYNCBENCH_PW="+password)
	if out, err := add.CombinedOutput(); err != nil {
		return measure{}, fmt.Errorf("mailbus account add: %w\n%s", err, out)
	}

	token, err := apitoken.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		return measure{}, err
	}
	conn, err := grpc.NewClient(listen, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(token))
	if err != nil {
		return measure{}, err
	}
	defer conn.Close()
	accounts := mailbusv1.NewAccountServiceClient(conn)
	mailboxes := mailbusv1.NewMailboxServiceClient(conn)
	deadline := time.Now().Add(time.Hour)
	for {
		if err := ctx.Err(); err != nil {
			return measure{}, err
		}
		if time.Now().After(deadline) {
			return measure{}, errors.New("mailbus: initial sync not done after an hour")
		}
		done, err := synced(ctx, accounts, mailboxes, t.messages)
		if err != nil {
			return measure{}, err
		}
		if done {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	m := measure{wall: time.Since(start), rssMB: vmHWM(serve.Process.Pid)}
	conn.Close()
	_ = serve.Process.Signal(syscall.SIGTERM)
	werr := serve.Wait()
	stopped = true
	// CPU includes the graceful stop, a few milliseconds.
	m.cpu = serve.ProcessState.UserTime() + serve.ProcessState.SystemTime()
	if werr != nil {
		return m, fmt.Errorf("mailbus serve on SIGTERM: %w: %s", werr, stderr.String())
	}
	return m, nil
}

// synced reports whether the account is idle after a successful pass with
// want messages stored.
func synced(ctx context.Context, accounts mailbusv1.AccountServiceClient, mailboxes mailbusv1.MailboxServiceClient, want int) (bool, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := accounts.GetAccount(cctx, &mailbusv1.GetAccountRequest{Name: "bench"})
	if err != nil {
		return false, fmt.Errorf("get account: %w", err)
	}
	st := resp.GetAccount().GetStatus()
	switch {
	case st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED:
		return false, fmt.Errorf("account parked: %s", st.GetReason())
	case st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || st.GetLastSuccessTime() == nil:
		return false, nil
	}
	boxes, err := mailboxes.ListMailboxes(cctx, &mailbusv1.ListMailboxesRequest{AccountId: resp.GetAccount().GetId()})
	if err != nil {
		return false, fmt.Errorf("list mailboxes: %w", err)
	}
	stored := 0
	for _, b := range boxes.GetMailboxes() {
		stored += int(b.GetTotalMessages())
	}
	return stored == want, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// buildMailbus builds the mailbus binary into dir.
func buildMailbus(dir string) (string, error) {
	bin := filepath.Join(dir, "mailbus")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/mailbus/mailbus/services/mailbus/cmd/mailbus")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build mailbus: %w\n%s", err, out)
	}
	return bin, nil
}

// ensureInstalled looks for program and, if it is missing, installs the
// Debian package pkg with apt-get (as root). It returns an error saying
// why the tool cannot run.
func ensureInstalled(program, pkg string) error {
	if _, err := exec.LookPath(program); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s is not installed and this is not root: apt-get install %s", program, pkg)
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		return fmt.Errorf("%s is not installed and there is no apt-get", program)
	}
	install := func() error {
		cmd := exec.Command("apt-get", "install", "-y", "--no-install-recommends", pkg)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("apt-get install %s: %w\n%s", pkg, err, tail(out))
		}
		return nil
	}
	if err := install(); err != nil {
		// The package lists may be missing or stale.
		if out, uerr := exec.Command("apt-get", "update").CombinedOutput(); uerr != nil {
			return fmt.Errorf("%w; apt-get update: %v\n%s", err, uerr, tail(out))
		}
		if err := install(); err != nil {
			return err
		}
	}
	if _, err := exec.LookPath(program); err != nil {
		return fmt.Errorf("apt-get installed %s but %s is not on PATH", pkg, program)
	}
	return nil
}

func tail(b []byte) []byte {
	if len(b) > 2000 {
		return b[len(b)-2000:]
	}
	return b
}

// version is the first version-like word of a program's version output.
func version(program string, args ...string) string {
	out, err := exec.Command(program, args...).Output()
	if err != nil {
		return "?"
	}
	for _, f := range strings.Fields(strings.SplitN(string(out), "\n", 2)[0]) {
		if len(f) > 0 && f[0] >= '0' && f[0] <= '9' {
			return f
		}
	}
	return "?"
}

// loadAverage is the first field of /proc/loadavg.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _ := strconv.ParseFloat(strings.Fields(string(b) + " 0")[0], 64)
	return f
}
