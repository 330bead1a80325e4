//go:build linux

package imapsync_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// idleBenchAccounts are the account counts of BenchmarkIdleAccounts
// (MAILBUS_BENCH_IDLE_ACCOUNTS, comma-separated, overrides them).
var idleBenchAccounts = []int{100, 300, 1000}

// idleBenchMessages is the size of every account's INBOX.
const idleBenchMessages = 20

// BenchmarkIdleAccounts measures what an idle IMAP account costs one
// mailbus-imapsync process, and how long the first sync of many small
// accounts takes. Dovecot (its own processes) serves one user per account
// with idleBenchMessages messages in INBOX; the store (SQLite) and NATS
// run in this process; mailbus-imapsync runs as its own process, so its
// memory is its own.
//
// For each setting of --connections (3, the default: a work connection
// and an IDLE connection on INBOX; 1: IDLE on the work connection) and
// each count N: a fresh store with N accounts, a fresh imapsync process;
// the time until every account has reported IDLE (its first sync done)
// and Dovecot counts the account's connections (`doveadm who`); then,
// right after the next garbage collection in the idle process, its RSS
// (/proc) and from its /metrics the live heap (what the collection kept),
// heap in use and stacks. A run with no accounts gives the base that is
// subtracted.
func BenchmarkIdleAccounts(b *testing.B) {
	counts := idleBenchAccounts
	if v := os.Getenv("MAILBUS_BENCH_IDLE_ACCOUNTS"); v != "" {
		counts = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("MAILBUS_BENCH_IDLE_ACCOUNTS: %q is not a positive count", f)
			}
			counts = append(counts, n)
		}
	}
	most := 0
	for _, n := range counts {
		most = max(most, n)
	}
	users := make([]dovecottest.User, most)
	for i := range users {
		users[i] = dovecottest.User{Name: fmt.Sprintf("u%05d", i), Password: "secret"}
	}
	// One imap process serves many connections (service_count = 0: it
	// is reused; all mail belongs to one uid here), so 2,000 connections
	// do not need 2,000 processes; the other services' limits follow
	// default_client_limit.
	s := dovecottest.Start(b, &dovecottest.Options{Users: users, LoginProcesses: 2, ExtraConfig: `
default_client_limit = 10000
service imap {
  service_count = 0
  client_limit = 50
  process_limit = 100
}`})
	for _, u := range users {
		for i := range idleBenchMessages {
			if err := s.Deliver(u.Name, "INBOX", testMessage(i, "INBOX")); err != nil {
				b.Fatal(err)
			}
		}
	}
	bin := buildImapsync(b)

	b.ResetTimer()
	for range b.N {
		for _, conns := range []int{imapsync.DefaultConnections, 1} {
			r := idleRunner{bin: bin, s: s, conns: conns}
			base := r.run(b, 0, nil, nil)
			prev := base
			for _, n := range counts {
				prev = r.run(b, n, &base, &prev)
			}
		}
	}
}

// report logs and reports m against the base run and the previous count.
func (m idleMeasure) report(b *testing.B, base, prev idleMeasure) {
	n := m.accounts
	b.Logf("%d accounts: first sync %.1f s (%.0f accounts/s, %d messages), peak RSS %.0f MB; idle: RSS %.1f MB, live heap %.1f MB, heap in use %.1f MB, stacks %.1f MB, %d goroutines, %d Dovecot sessions",
		n, m.firstSync.Seconds(), float64(n)/m.firstSync.Seconds(), m.messages, mib(m.peakRSS), mib(m.rss), mib(m.live), mib(m.heap), mib(m.stack), m.goroutines, m.sessions)
	step := func(v, v0 uint64) float64 { return (float64(v) - float64(v0)) / float64(n-prev.accounts) / 1024 }
	b.Logf("%d accounts: per idle account, less the base: RSS %.1f KB, live heap %.1f KB, heap in use %.1f KB, stacks %.1f KB, %.1f goroutines; from %d to %d accounts: RSS %.1f KB, live heap + stacks %.1f KB per added account",
		n, perBase(m.rss, base.rss, n), perBase(m.live, base.live, n), perBase(m.heap, base.heap, n), perBase(m.stack, base.stack, n),
		float64(m.goroutines-base.goroutines)/float64(n),
		prev.accounts, n, step(m.rss, prev.rss), step(m.live+m.stack, prev.live+prev.stack))
	b.ReportMetric(perBase(m.rss, base.rss, n), "RSS-KB/account")
	b.ReportMetric(perBase(m.live+m.stack, base.live+base.stack, n), "live+stack-KB/account")
	b.ReportMetric(m.firstSync.Seconds(), "first-sync-s")
}

func mib(v uint64) float64 { return float64(v) / (1 << 20) }

func perBase(v, base uint64, n int) float64 {
	return (float64(v) - float64(base)) / float64(n) / 1024
}

// idleMeasure is one idleRunner.run's result.
type idleMeasure struct {
	accounts            int
	firstSync           time.Duration
	messages            int
	peakRSS, rss        uint64
	live, heap, stack   uint64
	goroutines          int
	sessions            int
	gcBefore, gcSettled int
}

// idleRunner runs mailbus-imapsync with --connections conns.
type idleRunner struct {
	bin   string
	s     *dovecottest.Server
	conns int
}

// run syncs n accounts (users u00000...) with a fresh store and imapsync
// process, waits until they idle, and measures the process; base and
// prev (nil for the base run itself) are what it is compared with.
func (r idleRunner) run(b *testing.B, n int, base, prev *idleMeasure) idleMeasure {
	b.Helper()
	s := r.s
	var m idleMeasure
	m.accounts = n
	perAccount := min(r.conns, 2) // work + INBOX IDLE, or one for both
	b.Run(fmt.Sprintf("connections=%d/accounts=%d", r.conns, n), func(b *testing.B) {
		e := startStore(b)
		var ids []string
		for i := range n {
			user := fmt.Sprintf("u%05d", i)
			a := e.createAccount(b, s.IMAPAddr(), mailbusv1.Security_SECURITY_NONE, user, "secret", func(a *mailbusv1.Account) {
				a.Name = user
				a.PollInterval = nil // the default (60 s), as in production
			})
			ids = append(ids, a.Id)
		}
		metricsAddr := freeAddr(b)
		// Unpaced: the default ramp-up (--host-rate 10 connections per
		// second to one host) alone would spread 2,000 connections over
		// 200 s.
		sync := exec.Command(r.bin, "--store", e.addr, "--nats", e.natsURL, "--listen", freeAddr(b), "--metrics-listen", metricsAddr,
			"--log-level", "warn", "--host-rate", "-1", "--connections", strconv.Itoa(r.conns))
		sync.Stdout, sync.Stderr = os.Stderr, os.Stderr
		sync.Env = append(os.Environ(), "MAILBUS_TOKEN="+e.serviceToken)
		sync.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // dies with the benchmark
		start := time.Now()
		if err := sync.Start(); err != nil {
			b.Fatal(err)
		}
		defer func() {
			sync.Process.Signal(syscall.SIGTERM)
			sync.Wait()
		}()
		deadline := time.Now().Add(20 * time.Minute)
		for n > 0 {
			if idle := idleAccounts(b, e); idle == n {
				break
			} else if time.Now().After(deadline) {
				b.Fatalf("%d of %d accounts idle after 20 minutes", idle, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
		m.firstSync = time.Since(start)
		for !serves(metricsAddr) {
			if time.Now().After(deadline) {
				b.Fatal("imapsync does not serve /metrics")
			}
			time.Sleep(100 * time.Millisecond)
		}
		// The IDLE connections start right after the status is reported.
		for {
			m.sessions = dovecotSessions(b, s)
			if m.sessions >= perAccount*n {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("Dovecot has %d sessions, want %d", m.sessions, perAccount*n)
			}
			time.Sleep(time.Second)
		}
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			resp, err := e.mailboxes.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: id})
			cancel()
			if err != nil {
				b.Fatal(err)
			}
			for _, mb := range resp.Mailboxes {
				m.messages += int(mb.TotalMessages)
			}
		}
		if m.messages != n*idleBenchMessages {
			b.Fatalf("store has %d messages, want %d", m.messages, n*idleBenchMessages)
		}
		// Idle: measure right after the next garbage collection (the
		// runtime forces one every two minutes at the latest).
		m.gcBefore = int(scrape(b, metricsAddr)["go_gc_duration_seconds_count"])
		var g map[string]float64
		for {
			time.Sleep(time.Second)
			g = scrape(b, metricsAddr)
			m.gcSettled = int(g["go_gc_duration_seconds_count"])
			if m.gcSettled > m.gcBefore {
				break
			}
			if time.Since(start) > 25*time.Minute {
				b.Fatal("no garbage collection in the idle process")
			}
		}
		m.live = uint64(g["go_gc_heap_live_bytes"])
		m.heap = uint64(g["go_memstats_heap_inuse_bytes"])
		m.stack = uint64(g["go_memstats_stack_inuse_bytes"])
		m.goroutines = int(g["go_goroutines"])
		m.rss = procStatus(b, sync.Process.Pid, "VmRSS")
		m.peakRSS = procStatus(b, sync.Process.Pid, "VmHWM")
		if got := dovecotSessions(b, s); got != perAccount*n {
			b.Errorf("Dovecot has %d sessions after the idle wait, want %d", got, perAccount*n)
		}
		if prev == nil {
			b.Logf("base (no accounts): RSS %.1f MB, live heap %.1f MB, heap in use %.1f MB, stacks %.2f MB, %d goroutines",
				mib(m.rss), mib(m.live), mib(m.heap), mib(m.stack), m.goroutines)
			return
		}
		m.report(b, *base, *prev)
	})
	return m
}

// idleAccounts counts the accounts whose status is IDLE.
func idleAccounts(b *testing.B, e *env) int {
	idle := 0
	token := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		resp, err := e.accounts.ListAccounts(ctx, &mailbusv1.ListAccountsRequest{PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		for _, a := range resp.Accounts {
			if a.GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE {
				idle++
			}
		}
		if token = resp.NextPageToken; token == "" {
			return idle
		}
	}
}

func freeAddr(b testing.TB) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// dovecotSessions counts Dovecot's logged-in IMAP connections.
func dovecotSessions(b testing.TB, s *dovecottest.Server) int {
	out, err := s.Doveadm("who", "-1")
	if err != nil {
		b.Fatalf("doveadm who: %v", err)
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[1] == "imap" {
			n++
		}
	}
	return n
}

// serves reports whether addr answers /metrics.
func serves(addr string) bool {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// scrape reads the numeric samples of a /metrics page (no labels).
func scrape(b testing.TB, addr string) map[string]float64 {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		b.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "#") || strings.Contains(f[0], "{") {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}

// procStatus is a size in /proc/<pid>/status (VmRSS, the resident set;
// VmHWM, its peak), in bytes.
func procStatus(b testing.TB, pid int, field string) uint64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("rss: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatalf("%s: not in /proc/%d/status", field, pid)
	return 0
}
