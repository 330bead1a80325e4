package imapgw

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// benchEnvInt reads a benchmark size from the environment.
func benchEnvInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// buildGateway builds mailbus-imapgw.
func buildGateway(b testing.TB) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "mailbus-imapgw")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/mailbus-imapgw").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// startGatewayProcess starts mailbus-imapgw (bin) against the test store
// and returns its address and process.
func startGatewayProcess(b testing.TB, e *env, bin string, extra ...string) (string, *os.Process) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, append([]string{"--store", e.addr, "--listen", addr, "--log-level", "warn"}, extra...)...)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(waitFor); ; {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("gateway not listening: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return addr, cmd.Process
}

// rssKiB reads a process's resident set size.
func rssKiB(b *testing.B, pid int) int {
	b.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.Fields(rest)[0])
			return n
		}
	}
	b.Fatal("no VmRSS")
	return 0
}

// BenchmarkIdleConnections: MAILBUS_BENCH_CONNS (1,000) clients of one
// account IDLE on one gateway process (20 tokens, 50 connections each);
// reports the gateway's RSS and the push latency of one message appended
// through the API to every client (store commit -> EXISTS).
func BenchmarkIdleConnections(b *testing.B) {
	conns := benchEnvInt("MAILBUS_BENCH_CONNS", 1000)
	e := startEnv(b)
	acct, inbox := e.account("work", "ann@example.com")
	for i := range benchEnvInt("MAILBUS_BENCH_INBOX", 100) {
		e.appendMsg(inbox.Id, testMail(fmt.Sprint(i)))
	}
	var tokens []string
	for range (conns + 49) / 50 {
		tok, _ := e.token(false, acct.Id)
		tokens = append(tokens, tok)
	}
	addr, proc := startGatewayProcess(b, e, buildGateway(b))
	baseRSS := rssKiB(b, proc.Pid)
	exists := make(chan time.Time, conns*4)
	var clients []*imapclient.Client
	var idles []*imapclient.IdleCommand
	for i := range conns {
		c, err := imapclient.DialInsecure(addr, &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					exists <- time.Now()
				}
			},
		}})
		if err != nil {
			b.Fatal(err)
		}
		clients = append(clients, c)
		if err := c.Login("work", tokens[i/50]).Wait(); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
		idle, err := c.Idle()
		if err != nil {
			b.Fatal(err)
		}
		idles = append(idles, idle)
	}
	b.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	// Let the gateway settle, then read its memory.
	settle := 2 * time.Second
	if v, err := time.ParseDuration(os.Getenv("MAILBUS_BENCH_SETTLE")); err == nil {
		settle = v
	}
	time.Sleep(settle)
	rss := rssKiB(b, proc.Pid)
	b.ResetTimer()
	var latencies []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		e.appendMsg(inbox.Id, testMail(fmt.Sprintf("push %d", i)))
		for range conns {
			select {
			case t := <-exists:
				latencies = append(latencies, t.Sub(start))
			case <-time.After(waitFor):
				b.Fatal("a client got no EXISTS")
			}
		}
	}
	b.StopTimer()
	slices.Sort(latencies)
	b.ReportMetric(float64(rss)/1024, "MB-rss")
	b.ReportMetric(float64(rss-baseRSS)/float64(conns), "KiB/conn")
	b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "ms-p50-push")
	b.ReportMetric(float64(latencies[len(latencies)-1].Microseconds())/1000, "ms-max-push")
	b.Logf("%d IDLEing connections: gateway RSS %.1f MB (%.1f MB before the clients), push to all: p50 %v, max %v",
		conns, float64(rss)/1024, float64(baseRSS)/1024, latencies[len(latencies)/2], latencies[len(latencies)-1])
	for _, idle := range idles {
		idle.Close()
	}
}

// BenchmarkMbsyncPull: mbsync's full pull of MAILBUS_BENCH_MESSAGES
// (10,000) messages into an empty maildir, from Dovecot directly and
// through the gateway from the store (same messages, one folder, maildir
// near side on a temporary directory), after one unmeasured pull from
// each; reports both walls and their ratio.
func BenchmarkMbsyncPull(b *testing.B) {
	bin, err := exec.LookPath("mbsync")
	if err != nil {
		b.Skip("mbsync not installed (apt-get install isync)")
	}
	n := benchEnvInt("MAILBUS_BENCH_MESSAGES", 10000)
	dc := dovecottest.Start(b, &dovecottest.Options{Users: []dovecottest.User{{Name: "ann", Password: "pw"}}})
	e := startEnv(b)
	acct, inbox := e.account("work", "ann@example.com")
	var wg sync.WaitGroup
	work := make(chan int)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				raw := benchMessage(i)
				if err := dc.Deliver("ann", "INBOX", []byte(raw), `\Seen`); err != nil {
					b.Error(err)
					return
				}
				if _, err := e.mailboxes().AppendMessage(callCtx(b), &mailbusv1.AppendMessageRequest{MailboxId: inbox.Id, Raw: []byte(raw), Flags: []string{`\Seen`}, DeviceId: "bench"}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	for i := range n {
		work <- i
	}
	close(work)
	wg.Wait()
	tok, _ := e.token(true, acct.Id)
	gw := e.gateway(nil)
	pull := func(addr, user, pass string) time.Duration {
		dir := b.TempDir()
		start := time.Now()
		mbsyncPullSSL(b, bin, addr, user, pass, dir)
		return time.Since(start)
	}
	// One pull from each first, not measured: Dovecot builds its index and
	// cache files on the first access, the store's pages get into memory.
	pull(dc.IMAPAddr(), "ann", "pw")
	pull(gw.addr, "work", tok)
	b.ResetTimer()
	var dov, gwt time.Duration
	for i := 0; i < b.N; i++ {
		dov += pull(dc.IMAPAddr(), "ann", "pw")
		gwt += pull(gw.addr, "work", tok)
	}
	b.StopTimer()
	b.ReportMetric(dov.Seconds()/float64(b.N), "s-dovecot")
	b.ReportMetric(gwt.Seconds()/float64(b.N), "s-gateway")
	b.ReportMetric(float64(gwt)/float64(dov), "ratio")
	b.Logf("mbsync full pull of %d messages: Dovecot %v, gateway %v (%.2fx)", n, dov/time.Duration(b.N), gwt/time.Duration(b.N), float64(gwt)/float64(dov))
}

// benchMessage is a message of about 10 KB.
func benchMessage(i int) string {
	body := strings.Repeat(fmt.Sprintf("Line %d of a benchmark message, some text to fill it up.\r\n", i), 170)
	return fmt.Sprintf("From: Ann <ann@example.com>\r\nTo: bob@example.com\r\nSubject: bench %d\r\nMessage-ID: <bench.%d@example.com>\r\n"+
		"Date: Mon, 07 Dec 2026 10:00:00 +0000\r\n\r\n%s", i, i, body)
}

// mbsyncPullSSL is mbsyncPull for the benchmark: plaintext (both servers
// on loopback; Dovecot's STARTTLS is not used, so both sides pay the
// same).
func mbsyncPullSSL(b *testing.B, bin, addr, user, pass, dir string) {
	b.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf("IMAPAccount a\nHost %s\nPort %s\nUser %s\nPass %s\nSSLType None\nAuthMechs LOGIN\n\n"+
		"IMAPStore far\nAccount a\n\nMaildirStore near\nPath %s/\nInbox %s/INBOX\n\n"+
		"Channel c\nFar :far:\nNear :near:\nPatterns INBOX\nCreate Near\nSync Pull\nSyncState *\n", host, port, user, pass, dir, dir)
	f := filepath.Join(b.TempDir(), "mbsyncrc")
	if err := os.WriteFile(f, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command(bin, "-c", f, "c").CombinedOutput(); err != nil {
		b.Fatalf("mbsync: %v\n%s", err, out)
	}
}
