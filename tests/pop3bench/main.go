// Command pop3bench times a full keep-mode POP3 fetch of one maildrop from
// a private Dovecot on loopback by mailbus (mailbus-pop3fetcher --once into
// a mailbus-store on SQLite, each its own process, events published to a
// NATS server when one is installed), by Debian's getmail6 and mpop, and by
// a bare pkg/pop3 client that pipelines RETR and discards the bytes (the
// floor). It prints messages/s, MB/s (10^6 octets) and the peak resident
// memory (VmHWM, from /usr/bin/time -v) of each.
//
// The maildrop is generated deterministically: -messages messages of mixed
// sizes (mostly small, some large) adding up to about -size octets,
// delivered straight into Dovecot's Maildir. Before any timing a first bare
// fetch warms up Dovecot's index and the page cache, so every tool sees the
// same warm maildrop.
//
//	go run ./tests/pop3bench                        # 10,000 messages, 850 MB
//	go run ./tests/pop3bench -messages 2000 -size 170e6
//
// It runs from the repository root (it builds the binaries with go build)
// and needs dovecot; getmail6 and mpop are skipped with a note when missing.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3"
)

const (
	user     = "bench"
	password = "bench-pw"
)

type result struct {
	tool    string
	seconds float64
	peakKB  int64
	cpu     float64 // user + system CPU seconds of the measured process
	msgs    int
	octets  int64
	note    string
}

func main() {
	messages := flag.Int("messages", 10000, "messages in the maildrop")
	size := flag.Float64("size", 850e6, "approximate total octets of the maildrop")
	skipOthers := flag.Bool("mailbus-only", false, "time mailbus (and the bare client) only")
	keepDir := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	if err := run(*messages, int64(*size), *skipOthers, *keepDir); err != nil {
		fmt.Fprintln(os.Stderr, "pop3bench:", err)
		os.Exit(1)
	}
}

func run(messages int, size int64, mailbusOnly, keepDir bool) error {
	if err := dovecottest.Available(); err != nil {
		return err
	}
	if _, err := os.Stat("/usr/bin/time"); err != nil {
		return errors.New("/usr/bin/time is missing (apt-get install time)")
	}
	work, err := os.MkdirTemp("", "pop3bench-")
	if err != nil {
		return err
	}
	if !keepDir {
		defer os.RemoveAll(work)
	}
	logf("work directory %s", work)

	bin := filepath.Join(work, "bin")
	logf("building mailbus-store and mailbus-pop3fetcher")
	build := exec.Command("go", "build", "-o", bin+"/",
		"github.com/mailbus/mailbus/services/store/cmd/mailbus-store",
		"github.com/mailbus/mailbus/services/pop3fetcher/cmd/mailbus-pop3fetcher")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("go build: %w", err)
	}

	ctx := context.Background()
	d, err := dovecottest.StartServer(ctx, "", &dovecottest.Options{Users: []dovecottest.User{{Name: user, Password: password}}})
	if err != nil {
		return err
	}
	defer d.Close()
	logf("delivering %d messages (about %.0f MB) into Dovecot", messages, float64(size)/1e6)
	total, err := deliver(d, messages, size)
	if err != nil {
		return err
	}
	logf("delivered %d octets", total)

	logf("warming up Dovecot (one full bare fetch)")
	if _, err := bareFetch(d.POP3Addr(), messages); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}

	var results []result
	defer func() {
		for _, r := range results {
			logf("result: %+v", r)
		}
	}()
	r, err := bareFetch(d.POP3Addr(), messages)
	if err != nil {
		return err
	}
	results = append(results, r)

	r, err = mailbusFetch(work, bin, d, messages)
	if err != nil {
		return fmt.Errorf("mailbus: %w", err)
	}
	results = append(results, r)

	if !mailbusOnly {
		if r, err := mpopFetch(work, d, messages); err != nil {
			logf("mpop: %v", err)
		} else {
			results = append(results, r)
		}
		if r, err := getmailFetch(work, d, messages); err != nil {
			logf("getmail6: %v", err)
		} else {
			results = append(results, r)
		}
	}
	if n, err := d.MessageCount(user, "INBOX"); err != nil || n != messages {
		return fmt.Errorf("after the runs the maildrop holds %d messages (%v), want %d: keep mode broken", n, err, messages)
	}

	fmt.Printf("\nPOP3 keep-mode fetch of %d messages, %.0f MB, from Dovecot %s on loopback (plaintext POP3), %d CPUs\n\n",
		messages, float64(total)/1e6, dovecotVersion(), nproc())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "tool\tseconds\tmsgs/s\tMB/s\tpeak RSS (MB)\tCPU s\tnote\t")
	for _, r := range results {
		peak := "-"
		if r.peakKB > 0 {
			peak = fmt.Sprintf("%.1f", float64(r.peakKB)/1024)
		}
		cpu := "-"
		if r.cpu > 0 {
			cpu = fmt.Sprintf("%.1f", r.cpu)
		}
		fmt.Fprintf(tw, "%s\t%.2f\t%.0f\t%.1f\t%s\t%s\t%s\t\n", r.tool, r.seconds, float64(r.msgs)/r.seconds, float64(r.octets)/1e6/r.seconds, peak, cpu, r.note)
	}
	return tw.Flush()
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pop3bench: "+format+"\n", args...)
}

// sizes returns n deterministic message sizes adding up to about total:
// 80 % small (1-30 units), 17 % medium (30-300), 3 % large (300-3000).
func sizes(n int, total int64) []int64 {
	r := rand.New(rand.NewPCG(1939, 2449))
	w := make([]float64, n)
	var sum float64
	for i := range w {
		switch x := r.IntN(100); {
		case x < 80:
			w[i] = 1 + r.Float64()*29
		case x < 97:
			w[i] = 30 + r.Float64()*270
		default:
			w[i] = 300 + r.Float64()*2700
		}
		sum += w[i]
	}
	out := make([]int64, n)
	for i := range w {
		out[i] = max(int64(w[i]/sum*float64(total)), 600)
	}
	return out
}

// deliver writes the maildrop: message i is a text message of sizes()[i]
// octets with CRLF line ends, some lines starting with ".".
func deliver(d *dovecottest.Server, n int, total int64) (int64, error) {
	r := rand.New(rand.NewPCG(850, 10000))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	var sum int64
	var b bytes.Buffer
	for i, size := range sizes(n, total) {
		b.Reset()
		fmt.Fprintf(&b, "From: sender%d@example.com\r\nTo: %s@example.com\r\nSubject: benchmark message %d\r\nMessage-ID: <bench%d@example.com>\r\nDate: Mon, 05 Jan 2026 15:04:05 +0000\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n", i%97, user, i, i)
		line := make([]byte, 76)
		for int64(b.Len()) < size-80 {
			for j := range line {
				line[j] = alphabet[r.IntN(len(alphabet))]
			}
			if r.IntN(50) == 0 {
				line[0] = '.'
			}
			b.Write(line)
			b.WriteString("\r\n")
		}
		if err := d.Deliver(user, "INBOX", b.Bytes()); err != nil {
			return 0, err
		}
		sum += int64(b.Len())
	}
	return sum, nil
}

// bareFetch retrieves every message with pkg/pop3 (RETR pipelined) and
// discards it: the floor of what a fetcher can do. It runs in this
// process, so it has no peak memory of its own.
func bareFetch(addr string, want int) (result, error) {
	ctx := context.Background()
	start := time.Now()
	c, err := pop3.Dial(ctx, addr, &pop3.Options{Security: pop3.SecurityNone})
	if err != nil {
		return result{}, err
	}
	defer c.Close()
	if err := c.Login(ctx, pop3.Credentials{Username: user, Password: password}, pop3.MechanismAuto); err != nil {
		return result{}, err
	}
	if _, err := c.Uidl(ctx); err != nil {
		return result{}, err
	}
	list, err := c.List(ctx)
	if err != nil {
		return result{}, err
	}
	nums := make([]int, len(list))
	for i, e := range list {
		nums[i] = e.Number
	}
	var octets int64
	err = c.RetrPipelined(ctx, nums, func(_ int, r io.Reader) error {
		n, err := io.Copy(io.Discard, r)
		octets += n
		return err
	})
	if err != nil {
		return result{}, err
	}
	if err := c.Quit(ctx); err != nil {
		return result{}, err
	}
	if len(list) != want {
		return result{}, fmt.Errorf("bare fetch saw %d messages, want %d", len(list), want)
	}
	return result{tool: "pkg/pop3 bare (discard)", seconds: time.Since(start).Seconds(), msgs: len(list), octets: octets, note: "floor: RETR pipelined, no storage"}, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// mailbusFetch runs a NATS server (when installed) and mailbus-store as
// processes, creates the account, and times mailbus-pop3fetcher --once.
func mailbusFetch(work, bin string, d *dovecottest.Server, want int) (result, error) {
	dir := filepath.Join(work, "mailbus")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return result{}, err
	}
	natsURL := ""
	note := "store on SQLite, events to JetStream"
	if natsBin, err := exec.LookPath("nats-server"); err == nil {
		addr, err := freeAddr()
		if err != nil {
			return result{}, err
		}
		host, port, _ := net.SplitHostPort(addr)
		nats := exec.Command(natsBin, "-a", host, "-p", port, "-js", "-sd", filepath.Join(dir, "nats"))
		if err := nats.Start(); err != nil {
			return result{}, err
		}
		defer func() { nats.Process.Kill(); nats.Wait() }()
		natsURL = "nats://" + addr
		if err := waitTCP(addr); err != nil {
			return result{}, fmt.Errorf("nats-server: %w", err)
		}
	} else {
		note = "store on SQLite, no NATS installed: events stay in the outbox"
	}
	storeAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	var storeErr bytes.Buffer
	store := exec.Command(filepath.Join(bin, "mailbus-store"), "--listen", storeAddr, "--metrics-listen", "-",
		"--data", filepath.Join(dir, "data"), "--dev", "--nats", natsURL, "--log-level", "warn",
		"--service-token-file", filepath.Join(dir, "service.token"))
	store.Stderr = &storeErr
	if err := store.Start(); err != nil {
		return result{}, err
	}
	defer func() { store.Process.Kill(); store.Wait() }()
	health, err := grpc.NewClient(storeAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return result{}, err
	}
	defer health.Close()
	if err := waitServing(health); err != nil {
		return result{}, fmt.Errorf("store: %w: %s", err, storeErr.String())
	}
	// The store wrote its admin token before it served.
	adminToken, err := apitoken.ReadFile(filepath.Join(dir, "data", "admin.token"))
	if err != nil {
		return result{}, err
	}
	conn, err := grpc.NewClient(storeAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(adminToken))
	if err != nil {
		return result{}, err
	}
	defer conn.Close()
	host, port, _ := net.SplitHostPort(d.POP3Addr())
	p, _ := strconv.Atoi(port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	acct, err := mailbusv1.NewAccountServiceClient(conn).CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "bench", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: host, Port: uint32(p),
		Security: mailbusv1.Security_SECURITY_NONE, Username: user, Secret: password,
		Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_KEEP, PollInterval: durationpb.New(time.Hour),
	}})
	if err != nil {
		return result{}, err
	}
	logf("mailbus: fetching")
	grpcAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	m, err := timed(filepath.Join(bin, "mailbus-pop3fetcher"), "--once", "--store", storeAddr,
		"--token-file", filepath.Join(dir, "service.token"), "--listen", grpcAddr, "--metrics-listen", "-", "--log-level", "warn")
	if err != nil {
		return result{}, err
	}
	storePeak := vmHWM(store.Process.Pid)
	n, octets, err := storedCount(conn, acct.Account.Id)
	if err != nil {
		return result{}, err
	}
	if n != want {
		return result{}, fmt.Errorf("the store holds %d messages, want %d", n, want)
	}
	if storePeak > 0 {
		note += fmt.Sprintf("; store process peak %.0f MB", float64(storePeak)/1024)
	}
	return result{tool: "mailbus-pop3fetcher", seconds: m.seconds, peakKB: m.peakKB, cpu: m.cpu, msgs: n, octets: octets, note: note}, nil
}

func waitTCP(addr string) error {
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s does not answer", addr)
}

func waitServing(conn *grpc.ClientConn) error {
	h := healthpb.NewHealthClient(conn)
	var err error
	for range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		var resp *healthpb.HealthCheckResponse
		resp, err = h.Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.Status == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("not serving: %v", err)
}

// storedCount counts the account's messages in the store and adds up
// their sizes.
func storedCount(conn *grpc.ClientConn, accountID string) (int, int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mb := mailbusv1.NewMailboxServiceClient(conn)
	boxes, err := mb.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: accountID})
	if err != nil {
		return 0, 0, err
	}
	n, octets := 0, int64(0)
	for _, box := range boxes.Mailboxes {
		tok := ""
		for {
			resp, err := mb.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: box.Id, PageSize: 1000, PageToken: tok})
			if err != nil {
				return 0, 0, err
			}
			for _, m := range resp.Messages {
				n++
				octets += int64(m.Size)
			}
			if tok = resp.NextPageToken; tok == "" {
				break
			}
		}
	}
	return n, octets, nil
}

// measured is what /usr/bin/time -v tells of a run.
type measured struct {
	seconds float64 // wall time
	peakKB  int64   // peak RSS
	cpu     float64 // user + system seconds
	stderr  string
}

// timed runs a command under /usr/bin/time -v.
func timed(name string, args ...string) (measured, error) {
	cmd := exec.Command("/usr/bin/time", append([]string{"-v", name}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.Stdout = os.Stderr
	start := time.Now()
	err := cmd.Run()
	m := measured{seconds: time.Since(start).Seconds(), stderr: stderr.String()}
	sc := bufio.NewScanner(&stderr)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "Maximum resident set size (kbytes):"); ok {
			m.peakKB, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		for _, p := range []string{"User time (seconds):", "System time (seconds):"} {
			if v, ok := strings.CutPrefix(line, p); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				m.cpu += f
			}
		}
	}
	if err != nil {
		return m, fmt.Errorf("%s: %w: %s", name, err, tail(m.stderr, 2000))
	}
	return m, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// vmHWM reads a running process's peak resident set size (KiB).
func vmHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

func makeMaildir(dir string) error {
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// maildirStats counts the messages delivered into a Maildir and their
// octets.
func maildirStats(dir string) (int, int64, error) {
	n, octets := 0, int64(0)
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			return 0, 0, err
		}
		for _, e := range entries {
			info, err := e.Info()
			if err != nil {
				return 0, 0, err
			}
			n++
			octets += info.Size()
		}
	}
	return n, octets, nil
}

// mpopFetch times mpop delivering into a Maildir in keep mode.
func mpopFetch(work string, d *dovecottest.Server, want int) (result, error) {
	mpop, err := exec.LookPath("mpop")
	if err != nil {
		return result{}, errors.New("not installed (apt-get install mpop)")
	}
	dir := filepath.Join(work, "mpop")
	maildir := filepath.Join(dir, "Maildir")
	if err := makeMaildir(maildir); err != nil {
		return result{}, err
	}
	host, port, _ := net.SplitHostPort(d.POP3Addr())
	conf := filepath.Join(dir, "mpoprc")
	err = os.WriteFile(conf, fmt.Appendf(nil, `defaults
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
`, filepath.Join(dir, "uidls"), host, port, user, password, maildir), 0o600)
	if err != nil {
		return result{}, err
	}
	logf("mpop: fetching")
	m, err := timed(mpop, "--file="+conf, "--quiet", "bench")
	if err != nil {
		return result{}, err
	}
	n, octets, err := maildirStats(maildir)
	if err != nil {
		return result{}, err
	}
	if n != want {
		return result{}, fmt.Errorf("mpop delivered %d messages, want %d", n, want)
	}
	return result{tool: "mpop " + version(mpop, "--version"), seconds: m.seconds, peakKB: m.peakKB, cpu: m.cpu, msgs: n, octets: octets, note: "Maildir"}, nil
}

// getmailFetch times getmail6 retrieving in keep mode and delivering over
// LMTP (MDA_lmtp) into a Maildir written by lmtpSink (see there for why
// not its Maildir destination).
func getmailFetch(work string, d *dovecottest.Server, want int) (result, error) {
	getmail, err := exec.LookPath("getmail")
	if err != nil {
		return result{}, errors.New("not installed (apt-get install getmail6)")
	}
	dir := filepath.Join(work, "getmail")
	maildir := filepath.Join(dir, "Maildir")
	if err := makeMaildir(maildir); err != nil {
		return result{}, err
	}
	sink, err := startLMTP(maildir)
	if err != nil {
		return result{}, err
	}
	defer sink.close()
	lhost, lport := sink.addr()
	host, port, _ := net.SplitHostPort(d.POP3Addr())
	rc := filepath.Join(dir, "getmailrc")
	err = os.WriteFile(rc, fmt.Appendf(nil, `[retriever]
type = SimplePOP3Retriever
server = %s
port = %s
username = %s
password = %s

[destination]
type = MDA_lmtp
host = %s
port = %d
override = %s@example.com

[options]
delete = false
read_all = true
verbose = 0
message_log_syslog = false
`, host, port, user, password, lhost, lport, user), 0o600)
	if err != nil {
		return result{}, err
	}
	logf("getmail6: fetching (slow)")
	m, err := timed(getmail, "--getmaildir="+dir, "--rcfile="+rc)
	if err != nil {
		return result{}, err
	}
	n, octets, err := maildirStats(maildir)
	if err != nil {
		return result{}, err
	}
	if n != want {
		return result{}, fmt.Errorf("getmail6 delivered %d messages, want %d", n, want)
	}
	return result{tool: "getmail6 " + version(getmail, "--version"), seconds: m.seconds, peakKB: m.peakKB, cpu: m.cpu, msgs: n, octets: octets,
		note: "MDA_lmtp into a Maildir (sink in the benchmark process)"}, nil
}

func version(bin, flag string) string {
	out, err := exec.Command(bin, flag).Output()
	if err != nil {
		return ""
	}
	for _, f := range strings.Fields(strings.SplitN(string(out), "\n", 2)[0]) {
		if len(f) > 0 && f[0] >= '0' && f[0] <= '9' {
			return f
		}
	}
	return ""
}

func dovecotVersion() string {
	out, err := exec.Command("dovecot", "--version").Output()
	if err != nil {
		return ""
	}
	return strings.Fields(string(out) + " ?")[0]
}

func nproc() int {
	out, err := exec.Command("nproc").Output()
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	return n
}
