package imapsync_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// benchFolders is the 10,000-message account of BenchmarkInitialSync.
var benchFolders = []struct {
	name string
	n    int
}{{"INBOX", 4000}, {"Archive", 3000}, {"Sent", 1500}, {"Work/Projects", 1000}, {"Lists", 500}}

// benchMessage is a message of about size bytes: headers and a base64
// body, CRLF line ends.
func benchMessage(r *rand.Rand, i int, folder string, size int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: sender%d@example.org\r\nTo: alice@example.org\r\nSubject: bench %d in %s\r\nMessage-ID: <b%d.%s@example.org>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\nMIME-Version: 1.0\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i, folder, i, strings.ReplaceAll(folder, "/", "."))
	raw := make([]byte, size*3/4)
	for j := range raw {
		raw[j] = byte(r.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	for len(enc) > 0 {
		n := min(len(enc), 76)
		b.WriteString(enc[:n])
		b.WriteString("\r\n")
		enc = enc[n:]
	}
	return []byte(b.String())
}

// benchSize: 70% 10–60 KB, 25% 60–200 KB, 5% 200–600 KB.
func benchSize(r *rand.Rand) int {
	switch p := r.IntN(100); {
	case p < 70:
		return 10<<10 + r.IntN(50<<10)
	case p < 95:
		return 60<<10 + r.IntN(140<<10)
	default:
		return 200<<10 + r.IntN(400<<10)
	}
}

func buildImapsync(b *testing.B) string {
	b.Helper()
	bin := filepath.Join(b.TempDir(), "mailbus-imapsync")
	cmd := exec.Command("go", "build", "-o", bin, "../cmd/mailbus-imapsync")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

func maxRSSMB(ps *os.ProcessState) float64 {
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		return float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return 0
}

// BenchmarkInitialSync: a 10,000-message account in five folders on
// Dovecot (plain IMAP on loopback), pulled by a bare pipelined UID FETCH
// (one command per folder), by Debian's mbsync into a Maildir, and by the
// mailbus-imapsync binary into a store (SQLite, in this process).
func BenchmarkInitialSync(b *testing.B) {
	if _, err := exec.LookPath("mbsync"); err != nil {
		b.Skip("mbsync not installed: apt-get install isync")
	}
	s := dovecottest.Start(b, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}})
	r := rand.New(rand.NewPCG(1, 2))
	var total int64
	count := 0
	for _, f := range benchFolders {
		for i := range f.n {
			m := benchMessage(r, i, f.name, benchSize(r))
			total += int64(len(m))
			count++
			if err := s.Deliver("alice", f.name, m); err != nil {
				b.Fatal(err)
			}
		}
	}
	mb := float64(total) / 1e6
	b.Logf("account: %d messages, %.0f MB in %d folders", count, mb, len(benchFolders))
	report := func(name string, d time.Duration, ps *os.ProcessState) {
		rss, cpu := 0.0, "-"
		if ps != nil {
			rss = maxRSSMB(ps)
			cpu = fmt.Sprintf("%.1f s", (ps.UserTime() + ps.SystemTime()).Seconds())
		}
		b.Logf("%-24s %7.2f s  %7.0f msgs/s  %6.0f MB/s  peak RSS %s  CPU %s", name, d.Seconds(), float64(count)/d.Seconds(), mb/d.Seconds(), rssString(rss), cpu)
		key := strings.Fields(name)[0]
		key = strings.NewReplacer("→", "-to-", "(", "", ")", "").Replace(key)
		b.ReportMetric(float64(count)/d.Seconds(), key+"-msgs/s")
		b.ReportMetric(mb/d.Seconds(), key+"-MB/s")
		if rss > 0 {
			b.ReportMetric(rss, key+"-peakRSS-MB")
		}
	}

	// Bare UID FETCH (also indexes the mail and warms the page cache, so
	// that the tools below start equal).
	for round := range 2 {
		start := time.Now()
		c, err := imapclient.DialInsecure(s.IMAPAddr(), nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Login("alice", "secret").Wait(); err != nil {
			b.Fatal(err)
		}
		got := 0
		for _, f := range benchFolders {
			if _, err := c.Select(f.name, &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
				b.Fatal(err)
			}
			cmd := c.Fetch(imap.UIDSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
			for m := cmd.Next(); m != nil; m = cmd.Next() {
				if _, err := m.Collect(); err != nil {
					b.Fatal(err)
				}
				got++
			}
			if err := cmd.Close(); err != nil {
				b.Fatal(err)
			}
		}
		c.Close()
		if got != count {
			b.Fatalf("bare fetch got %d messages", got)
		}
		if round == 1 {
			report("bare-UID-FETCH (go-imap)", time.Since(start), nil)
		}
	}

	b.ResetTimer()
	for range b.N {
		// mbsync, as installed (FSync yes: every message is fsynced, as the
		// store's commits are) and with FSync no.
		for _, fsync := range []string{"yes", "no"} {
			dir := b.TempDir()
			cfg := filepath.Join(dir, "mbsyncrc")
			_, port, _ := net.SplitHostPort(s.IMAPAddr())
			conf := fmt.Sprintf(`FSync %s

IMAPAccount dc
Host 127.0.0.1
Port %s
User alice
Pass secret
SSLType None
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
`, fsync, port, dir, dir)
			if err := os.MkdirAll(filepath.Join(dir, "mail"), 0o700); err != nil {
				b.Fatal(err)
			}
			if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
				b.Fatal(err)
			}
			start := time.Now()
			cmd := exec.Command("mbsync", "-q", "-c", cfg, "dc")
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("mbsync: %v\n%s", err, out)
			}
			report("mbsync-fsync-"+fsync+" (isync 1.4)", time.Since(start), cmd.ProcessState)
			os.RemoveAll(dir)
		}

		// mailbus-imapsync into a fresh store.
		b.StopTimer()
		bin := buildImapsync(b)
		e := startStore(b)
		a := e.createAccount(b, s.IMAPAddr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := lis.Addr().String()
		lis.Close()
		b.StartTimer()
		start := time.Now()
		storeCPU := selfCPU()
		sync := exec.Command(bin, "--store", e.addr, "--nats", "", "--listen", addr, "--metrics-listen", "-", "--log-level", "warn")
		sync.Stdout, sync.Stderr = os.Stderr, os.Stderr
		sync.Env = append(os.Environ(), "MAILBUS_TOKEN="+e.serviceToken)
		if err := sync.Start(); err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			st := e.account(b, a.Id).GetStatus()
			if st.GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("initial sync not done: %v", st)
			}
			time.Sleep(10 * time.Millisecond)
		}
		d := time.Since(start)
		storeCPU = selfCPU() - storeCPU
		b.StopTimer()
		sync.Process.Signal(syscall.SIGTERM)
		sync.Wait()
		resp, err := e.mailboxes.ListMailboxes(ctxT(b), &mailbusv1.ListMailboxesRequest{AccountId: a.Id})
		if err != nil {
			b.Fatal(err)
		}
		stored := 0
		for _, m := range resp.Mailboxes {
			stored += int(m.TotalMessages)
		}
		if stored != count {
			b.Fatalf("store has %d messages, want %d", stored, count)
		}
		report("mailbus-imapsync→store", d, sync.ProcessState)
		// The store runs in this process (with NATS and the status poll):
		// its CPU, next to imapsync's own, is what the pair costs.
		b.Logf("%-24s %7.1f s CPU (this process, during the sync)", "  store (in-process)", storeCPU.Seconds())
		b.ReportMetric(storeCPU.Seconds(), "store-CPU-s")
		b.StartTimer()
	}
}

// selfCPU is the user and system CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func rssString(mb float64) string {
	if mb == 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f MB", mb)
}

// BenchmarkLatency: over 200 trials each, (1) a third-party flag change on
// Dovecot until its event arrives on JetStream, next to a plain IDLE client
// seeing the same change; (2) a device flag change through the store until
// a plain client polling Dovecot sees it (and when the IDLE client hears
// of it).
func BenchmarkLatency(b *testing.B) {
	const trials = 200
	s := dovecottest.Start(b, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}}})
	for i := range trials {
		if err := s.Deliver("alice", "INBOX", testMessage(i, "INBOX")); err != nil {
			b.Fatal(err)
		}
	}
	e := startStore(b)
	// The default poll interval (the tests' 1 s would add a STATUS pass
	// over every folder each second).
	a := e.createAccount(b, s.IMAPAddr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", func(a *mailbusv1.Account) { a.PollInterval = nil })
	startSync(b, e, func(c *imapsync.Config) {
		c.Logger = nil
		// MAILBUS_BENCH_CONNECTIONS=1: IDLE on the work connection
		// (decision 19).
		if v := os.Getenv("MAILBUS_BENCH_CONNECTIONS"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				b.Fatalf("MAILBUS_BENCH_CONNECTIONS=%q: want a count of at least 1", v)
			}
			c.Connections = n
		}
	})
	waitFor(b, "initial sync", func() bool {
		return e.account(b, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
	})
	ids := map[uint32]string{}
	for uid, m := range e.storeFolder(b, a.Id, "INBOX") {
		ids[uid] = m.id
	}
	byID := map[string]uint32{}
	for uid, id := range ids {
		byID[id] = uid
	}

	// JetStream: message.updated events, by uid.
	jsSeen := make(chan seen, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AccountSubjects(a.Id)}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Unmarshal(m.Data())
		if err != nil || ev.GetMessageUpdated() == nil || ev.GetOrigin().GetKind() != mailbusv1.OriginKind_ORIGIN_KIND_UPSTREAM {
			return
		}
		jsSeen <- seen{byID[ev.GetMessageUpdated().GetMessage().GetId()], time.Now()}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	// Device events on core NATS (what wakes imapsync's write-backs).
	natsSeen := make(chan seen, 1024)
	sub, err := e.nc.Subscribe(events.AccountSubjects(a.Id), func(m *nats.Msg) {
		ev, err := events.Unmarshal(m.Data)
		if err != nil || ev.GetMessageUpdated() == nil || ev.GetOrigin().GetKind() != mailbusv1.OriginKind_ORIGIN_KIND_DEVICE {
			return
		}
		natsSeen <- seen{byID[ev.GetMessageUpdated().GetMessage().GetId()], time.Now()}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()

	// The plain IDLE client.
	idleSeen := make(chan seen, 1024)
	ic, err := imapclient.DialInsecure(s.IMAPAddr(), &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
		Fetch: func(m *imapclient.FetchMessageData) {
			at := time.Now()
			seq := m.SeqNum
			m.Collect()
			idleSeen <- seen{seq, at} // no expunges: sequence number = UID
		},
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer ic.Close()
	if err := ic.Login("alice", "secret").Wait(); err != nil {
		b.Fatal(err)
	}
	if _, err := ic.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		b.Fatal(err)
	}
	idle, err := ic.Idle()
	if err != nil {
		b.Fatal(err)
	}
	defer idle.Close()

	tp := dialPlain(b, s.IMAPAddr(), "alice", "secret")
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		b.Fatal(err)
	}
	// Each notification carries the time it arrived: the trials wait for
	// several in turn.
	waitUID := func(ch chan seen, uid uint32) time.Time {
		timeout := time.After(30 * time.Second)
		for {
			select {
			case got := <-ch:
				if got.uid == uid {
					return got.at
				}
			case <-timeout:
				b.Fatalf("uid %d never seen", uid)
			}
		}
	}
	drain := func(ch chan seen) {
		for {
			select {
			case <-ch:
			default:
				return
			}
		}
	}

	b.ResetTimer()
	for range b.N {
		var upJS, upIdle, devVisible, devIdle, devNATS []time.Duration
		for i := range trials {
			uid := uint32(i + 1)
			drain(jsSeen)
			drain(idleSeen)
			t0 := time.Now()
			if err := tp.Store(imap.UIDSetNum(imap.UID(uid)), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
				b.Fatal(err)
			}
			tIdle := waitUID(idleSeen, uid)
			tJS := waitUID(jsSeen, uid)
			upIdle = append(upIdle, tIdle.Sub(t0))
			upJS = append(upJS, tJS.Sub(t0))
		}
		time.Sleep(time.Second) // let the last echoes settle
		for i := range trials {
			uid := uint32(i + 1)
			drain(idleSeen)
			drain(natsSeen)
			t0 := time.Now()
			if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: a.Id, MessageIds: []string{ids[uid]}, Add: []string{`\Seen`}, DeviceId: "bench"}); err != nil {
				b.Fatal(err)
			}
			for {
				msgs, err := tp.Fetch(imap.UIDSetNum(imap.UID(uid)), &imap.FetchOptions{Flags: true}).Collect()
				if err != nil {
					b.Fatal(err)
				}
				if len(msgs) == 1 && strings.Contains(fmt.Sprint(msgs[0].Flags), `\Seen`) {
					break
				}
				if time.Since(t0) > 30*time.Second {
					b.Fatalf("device change on uid %d never visible", uid)
				}
			}
			devVisible = append(devVisible, time.Since(t0))
			devNATS = append(devNATS, waitUID(natsSeen, uid).Sub(t0))
			devIdle = append(devIdle, waitUID(idleSeen, uid).Sub(t0))
		}
		for _, row := range []struct {
			name string
			d    []time.Duration
		}{
			{"third-party change → JetStream event", upJS},
			{"third-party change → plain IDLE client", upIdle},
			{"device change → event on NATS (the wake-up)", devNATS},
			{"device change → visible on Dovecot", devVisible},
			{"device change → plain IDLE client", devIdle},
		} {
			p50, p99 := percentile(row.d, 50), percentile(row.d, 99)
			b.Logf("%-42s n=%d p50 %6.1f ms  p99 %6.1f ms", row.name, len(row.d), ms(p50), ms(p99))
			key := strings.NewReplacer(" ", "-", "→", "to", "(", "", ")", "").Replace(row.name)
			b.ReportMetric(ms(p50), key+"-p50-ms")
			b.ReportMetric(ms(p99), key+"-p99-ms")
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(d []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p+99)/100 - 1
	return s[max(i, 0)]
}

// seen is a notification about a message and when it arrived.
type seen struct {
	uid uint32
	at  time.Time
}
