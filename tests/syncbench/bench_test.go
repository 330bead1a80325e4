package syncbench

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/dovecottest"
)

// settings are the benchmark's environment variables.
type settings struct {
	messages int      // MAILBUS_BENCH_MESSAGES: the large cases (default 10000)
	small    int      // MAILBUS_BENCH_SMALL_MESSAGES: the small IMAP case (default a fifth of messages)
	runs     int      // MAILBUS_BENCH_RUNS: runs of each tool, the median is shown (default 1)
	cases    []string // MAILBUS_BENCH_CASES: of imap, imap-small, imaps, pop3 (default all)
	storages []storage
}

// storage is where the tools write: tmpfs, where fsync costs nothing, or
// a disk, where it does.
type storage struct {
	name, dir string
}

var allCases = []string{"imap", "imap-small", "imaps", "pop3"}

func readSettings(b *testing.B) settings {
	b.Helper()
	num := func(name string, def int) int {
		v := os.Getenv(name)
		if v == "" {
			return def
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a count of at least 1", name, v)
		}
		return n
	}
	s := settings{messages: num("MAILBUS_BENCH_MESSAGES", 10000), runs: num("MAILBUS_BENCH_RUNS", 1)}
	s.small = num("MAILBUS_BENCH_SMALL_MESSAGES", max(s.messages/5, 1))
	if s.small > s.messages {
		b.Fatalf("MAILBUS_BENCH_SMALL_MESSAGES=%d: at most MAILBUS_BENCH_MESSAGES (%d)", s.small, s.messages)
	}
	s.cases = allCases
	if v := os.Getenv("MAILBUS_BENCH_CASES"); v != "" {
		s.cases = nil
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); !slices.Contains(allCases, c) {
				b.Fatalf("MAILBUS_BENCH_CASES: %q is none of %v", c, allCases)
			}
			s.cases = append(s.cases, strings.TrimSpace(c))
		}
	}
	dirs := map[string]string{
		"tmpfs": envOr("MAILBUS_BENCH_TMPFS_DIR", "/dev/shm"),
		"disk":  envOr("MAILBUS_BENCH_DISK_DIR", "/var/tmp"),
	}
	for _, name := range strings.Split(envOr("MAILBUS_BENCH_STORAGE", "tmpfs,disk"), ",") {
		name = strings.TrimSpace(name)
		dir, ok := dirs[name]
		if !ok {
			b.Fatalf("MAILBUS_BENCH_STORAGE: %q is neither tmpfs nor disk", name)
		}
		s.storages = append(s.storages, storage{name, dir})
	}
	return s
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// row is one line of the table: one tool on one case and storage.
type row struct {
	caseName, storage, tool, durability string
	key                                 string // the case in metric names: imap-10000
	m                                   measure
	err                                 error
	mailbus                             bool
}

// BenchmarkSideBySide times the initial sync of one generated corpus on
// a loopback Dovecot (issue 11, "Targets"): `mailbus serve` from its start
// until the account added with `mailbus account add` is idle with every
// message stored, Debian's mbsync (FSync yes, its default, and FSync no)
// and mpop, and a bare pipelined client storing nothing; each tool that
// stores writes once onto tmpfs and once onto disk. Cases: IMAP (large
// corpus in five folders), IMAP small, IMAPS (the large corpus over
// implicit TLS) and POP3 (the large corpus in INBOX).
//
// Environment: MAILBUS_BENCH_INITIAL_SYNC=1 to run at all (make
// bench-initial-sync sets it); MAILBUS_BENCH_MESSAGES (default 10000),
// MAILBUS_BENCH_SMALL_MESSAGES (default a fifth of it),
// MAILBUS_BENCH_CASES (imap,imap-small,imaps,pop3), MAILBUS_BENCH_STORAGE
// (tmpfs,disk), MAILBUS_BENCH_TMPFS_DIR (/dev/shm), MAILBUS_BENCH_DISK_DIR
// (/var/tmp), MAILBUS_BENCH_RUNS (1; each tool's run with the median wall
// time is shown, the runs of a case's tools interleaved).
func BenchmarkSideBySide(b *testing.B) {
	if os.Getenv("MAILBUS_BENCH_INITIAL_SYNC") != "1" {
		b.Skip("run by make bench-initial-sync (MAILBUS_BENCH_INITIAL_SYNC=1): it may apt-get install isync and mpop, and takes minutes")
	}
	cfg := readSettings(b)
	ctx := context.Background()
	wantIMAP := slices.ContainsFunc(cfg.cases, func(c string) bool { return strings.HasPrefix(c, "imap") })
	wantPOP3 := slices.Contains(cfg.cases, "pop3")
	if err := ensureInstalled(timeBin, "time"); err != nil {
		b.Fatal(err)
	}
	missing := map[string]error{}
	if wantIMAP {
		missing["mbsync"] = ensureInstalled("mbsync", "isync")
	}
	if wantPOP3 {
		missing["mpop"] = ensureInstalled("mpop", "mpop")
	}
	for tool, err := range missing {
		if err != nil {
			b.Logf("%s: %v (its rows are left out)", tool, err)
		}
	}
	bin, err := buildMailbus(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}

	s := dovecottest.Start(b, &dovecottest.Options{Users: []dovecottest.User{
		{Name: imapUser, Password: password}, {Name: smallUser, Password: password}, {Name: pop3User, Password: password}}})
	b.Logf("delivering %d messages (IMAP and POP3) and %d (small IMAP) into Dovecot", cfg.messages, cfg.small)
	big, small, err := deliverCorpus(s, cfg.messages, cfg.small, wantIMAP, wantPOP3)
	if err != nil {
		b.Fatal(err)
	}
	loadBefore := loadAverage()
	began := time.Now().UTC()

	cases := map[string]struct {
		title string
		t     target
		stats corpusStats
	}{
		"imap":       {"IMAP", target{protocol: "imap", addr: s.IMAPAddr(), user: imapUser, messages: big.messages, server: s}, big},
		"imap-small": {"IMAP", target{protocol: "imap", addr: s.IMAPAddr(), user: smallUser, messages: small.messages, server: s}, small},
		"imaps":      {"IMAPS", target{protocol: "imap", tls: true, addr: s.IMAPSAddr(), user: imapUser, messages: big.messages, server: s}, big},
		"pop3":       {"POP3", target{protocol: "pop3", addr: s.POP3Addr(), user: pop3User, messages: big.messages, server: s}, big},
	}
	// Warm up: one bare fetch of every account builds Dovecot's indexes
	// and fills the page cache, so that every tool starts equal.
	for _, name := range cfg.cases {
		c := cases[name]
		bare := bareIMAP
		if c.t.protocol == "pop3" {
			bare = barePOP3
		}
		if _, err := bare(ctx, c.t); err != nil {
			b.Fatalf("warm-up %s: %v", name, err)
		}
	}

	var rows []row
	b.ResetTimer()
	for _, name := range cfg.cases {
		c := cases[name]
		caseName := fmt.Sprintf("%s %s msgs, %.0f MB", c.title, thousands(c.stats.messages), float64(c.stats.octets)/1e6)
		if c.t.protocol == "imap" {
			caseName += fmt.Sprintf(", %d folders", len(folders))
		} else {
			caseName += ", INBOX"
		}
		b.Logf("case %s", caseName)
		bare, bareName := bareIMAP, "bare go-imap UID FETCH, one per folder (stores nothing)"
		if c.t.protocol == "pop3" {
			bare, bareName = barePOP3, "bare pkg/pop3 RETR pipelined (stores nothing)"
		}
		var bareRuns []measure
		var bareErr error
		for range cfg.runs {
			m, err := bare(ctx, c.t)
			if err != nil {
				bareErr = err
				b.Errorf("%s, %s: %v", caseName, bareName, err)
				break
			}
			bareRuns = append(bareRuns, m)
		}
		rows = append(rows, row{caseName: caseName, key: name + "-" + strconv.Itoa(c.stats.messages), storage: "–", tool: bareName, durability: "–", m: median(bareRuns), err: bareErr})

		for _, st := range cfg.storages {
			type tool struct {
				name, durability string
				mailbus          bool
				run              func(dir string) (measure, error)
			}
			var tools []tool
			if c.t.protocol == "imap" && missing["mbsync"] == nil {
				v := "mbsync " + version("mbsync", "--version")
				tools = append(tools,
					tool{v + " `FSync yes`", "fsync per message (its default)", false, func(dir string) (measure, error) { return mbsync(ctx, c.t, dir, true) }},
					tool{v + " `FSync no`", "no fsync", false, func(dir string) (measure, error) { return mbsync(ctx, c.t, dir, false) }})
			}
			if c.t.protocol == "pop3" && missing["mpop"] == nil {
				tools = append(tools, tool{"mpop " + version("mpop", "--version"), "fsync per message (always)", false,
					func(dir string) (measure, error) { return mpop(ctx, c.t, dir) }})
			}
			tools = append(tools, tool{"mailbus serve", "fsync per batch commit and per body file ≥ 32 KiB (always)", true,
				func(dir string) (measure, error) { return mailbusServe(ctx, bin, c.t, dir) }})
			// Run i of every tool, then run i+1: a change of the machine's
			// load during the case then falls on every tool alike.
			results := make([][]measure, len(tools))
			errs := make([]error, len(tools))
			for range cfg.runs {
				for i, tl := range tools {
					if errs[i] != nil {
						continue
					}
					m, err := runIn(st.dir, tl.run)
					if err != nil {
						errs[i] = err
						b.Errorf("%s, %s, %s: %v", caseName, st.name, tl.name, err)
						continue
					}
					b.Logf("  %-6s %-34s %s", st.name, tl.name, m)
					results[i] = append(results[i], m)
				}
			}
			for i, tl := range tools {
				rows = append(rows, row{caseName: caseName, key: name + "-" + strconv.Itoa(c.stats.messages), storage: st.name + " (" + st.dir + ")",
					tool: tl.name, durability: tl.durability, m: median(results[i]), err: errs[i], mailbus: tl.mailbus})
			}
		}
	}
	b.StopTimer()
	loadAfter := loadAverage()

	fmt.Print(markdown(rows, cfg.runs, began, loadBefore, loadAfter, s))
	report(b, rows)
}

// runIn runs a tool writing into a new directory under root, removed
// afterwards.
func runIn(root string, run func(dir string) (measure, error)) (measure, error) {
	dir, err := os.MkdirTemp(root, "syncbench-")
	if err != nil {
		return measure{}, err
	}
	defer os.RemoveAll(dir)
	// Write back what earlier runs left dirty, so that no run pays for
	// another's writes.
	syscall.Sync()
	return run(dir)
}

// median is the run with the median wall time (the slower of the two
// middle ones for an even count); zero for none.
func median(ms []measure) measure {
	if len(ms) == 0 {
		return measure{}
	}
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b measure) int { return cmp.Compare(a.wall, b.wall) })
	return ms[len(ms)/2]
}

func (m measure) String() string {
	return fmt.Sprintf("%7.2f s wall  %s CPU  %s peak RSS", m.wall.Seconds(), cpuString(m), rssString(m))
}

func cpuString(m measure) string {
	if m.cpu == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f s", m.cpu.Seconds())
}

func rssString(m measure) string {
	if m.rssMB == 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f MB", m.rssMB)
}

// markdown is the table, ready to paste into the README.
func markdown(rows []row, runs int, began time.Time, loadBefore, loadAfter float64, s *dovecottest.Server) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "\nInitial sync side by side (`make bench-initial-sync`), %s UTC; %d CPUs (%s), load average %.1f at the start, %.1f at the end; Dovecot %s on loopback (its mail on %s); each figure the run with the median wall time of %d.\n\n",
		began.Format("2006-01-02 15:04"), runtime.NumCPU(), host, loadBefore, loadAfter, version("dovecot", "--version"), s.Dir, runs)
	b.WriteString("| case | storage | tool | durability | wall | CPU | peak RSS | mailbus ÷ tool (wall / CPU / RSS) |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|\n")
	lastCase := ""
	for _, r := range rows {
		caseName := r.caseName
		if caseName == lastCase {
			caseName = "" // one case's rows follow each other
		}
		lastCase = r.caseName
		wall := fmt.Sprintf("%.2f s", r.m.wall.Seconds())
		if r.err != nil {
			wall = "failed"
		}
		ratio := "–"
		if mb, ok := mailbusRow(rows, r); ok && !r.mailbus && r.err == nil {
			ratio = ratioString(mb.m, r.m)
		}
		tool := r.tool
		if r.mailbus {
			tool = "**" + tool + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", caseName, r.storage, tool, r.durability, wall, cpuString(r.m), rssString(r.m), ratio)
	}
	b.WriteString("\nCPU is user + system time of the tool's process and its children (wait4); peak RSS is ru_maxrss under GNU time for mbsync and mpop, VmHWM for `mailbus serve`. `mailbus serve` is timed from its start until the account added with `mailbus account add` is idle with every message stored; its CPU and RSS are the whole server's (store, fetchers, embedded NATS, SQLite). The bare client runs inside the benchmark process (wall time only). For the bare client the mailbus ratio is to mailbus on tmpfs.\n")
	return b.String()
}

// mailbusRow is the mailbus row to compare r with: the same case and
// storage, or tmpfs for the bare client.
func mailbusRow(rows []row, r row) (row, bool) {
	for _, o := range rows {
		if !o.mailbus || o.caseName != r.caseName || o.err != nil {
			continue
		}
		if o.storage == r.storage || (r.storage == "–" && strings.HasPrefix(o.storage, "tmpfs")) {
			return o, true
		}
	}
	return row{}, false
}

func ratioString(mailbus, peer measure) string {
	parts := []string{fmt.Sprintf("%.2f×", mailbus.wall.Seconds()/peer.wall.Seconds())}
	if mailbus.cpu > 0 && peer.cpu > 0 {
		parts = append(parts, fmt.Sprintf("%.2f×", mailbus.cpu.Seconds()/peer.cpu.Seconds()))
	} else {
		parts = append(parts, "–")
	}
	if mailbus.rssMB > 0 && peer.rssMB > 0 {
		parts = append(parts, fmt.Sprintf("%.1f×", mailbus.rssMB/peer.rssMB))
	} else {
		parts = append(parts, "–")
	}
	return strings.Join(parts, " / ")
}

// report turns the rows into b.ReportMetric figures, named
// <case>-<storage>-<tool>-<figure>.
func report(b *testing.B, rows []row) {
	key := func(s string) string {
		s = strings.ToLower(s)
		s = strings.NewReplacer("`", "", " (stores nothing)", "", ",", "", "(", "", ")", "", "/", "", "–", "none").Replace(s)
		return strings.Join(strings.Fields(s), "-")
	}
	for _, r := range rows {
		if r.err != nil {
			continue
		}
		storage, _, _ := strings.Cut(r.storage, " ")
		tool := key(strings.Fields(r.tool)[0])
		if strings.Contains(r.tool, "FSync yes") {
			tool += "-fsync"
		} else if strings.Contains(r.tool, "FSync no") {
			tool += "-nofsync"
		}
		k := r.key + "-" + key(storage) + "-" + tool
		b.ReportMetric(r.m.wall.Seconds(), k+"-wall-s")
		if r.m.cpu > 0 {
			b.ReportMetric(r.m.cpu.Seconds(), k+"-cpu-s")
		}
		if r.m.rssMB > 0 {
			b.ReportMetric(r.m.rssMB, k+"-rss-MB")
		}
		if mb, ok := mailbusRow(rows, r); ok && !r.mailbus {
			b.ReportMetric(mb.m.wall.Seconds()/r.m.wall.Seconds(), k+"-mailbus-ratio-wall")
		}
	}
}

// thousands formats n with a comma between thousands (10,000).
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
