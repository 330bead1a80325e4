package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ingest"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// Benchmarks of the two paths the design cares most about: ingest (a
// fetcher's initial sync) and GetChanges (a device's delta sync). They run on
// both backends and do not run under plain `go test` (no -bench). Run them
// with, for example:
//
//	go test -run='^$' -bench=. -benchtime=1x ./services/store/store/

// corpusSize is how many messages one ingest benchmark iteration stores.
const corpusSize = 10_000

// ingestBatch is how many messages go into one db.Ingest call (the gRPC
// path batches the same way on the server).
const ingestBatch = 256

// corpus is a deterministic set of valid MIME messages.
type corpus struct {
	msgs  [][]byte
	bytes int64
}

var (
	corporaMu sync.Mutex
	corpora   = map[string]*corpus{}
)

// corpusNamed builds (once per process) the corpus "mixed" or "10KB".
//
// mixed is meant to look like a real mailbox: 85% of the messages are 2-20
// KB (text, or text and HTML alternatives), 10% 20-100 KB and 5% 100 KB - 1
// MB (a text part and a base64 attachment of random bytes); 456 MB.
// 10KB is 10,000 messages of 10 KB each (text and HTML), about 100 MB.
func corpusNamed(name string) *corpus {
	corporaMu.Lock()
	defer corporaMu.Unlock()
	if c, ok := corpora[name]; ok {
		return c
	}
	g := newMsgGen(42)
	c := &corpus{}
	for i := range corpusSize {
		size := 10 << 10
		if name == "mixed" {
			switch p := g.r.Float64(); {
			case p < 0.85:
				size = 2<<10 + g.r.IntN(18<<10)
			case p < 0.95:
				size = 20<<10 + g.r.IntN(80<<10)
			default:
				size = 100<<10 + g.r.IntN(924<<10)
			}
		}
		m := g.message(i, size)
		c.msgs = append(c.msgs, m)
		c.bytes += int64(len(m))
	}
	corpora[name] = c
	return c
}

// msgGen makes messages from a seeded generator and two blocks of filler:
// English-like text and base64 lines of random bytes.
type msgGen struct {
	r    *mrand.Rand
	text string
	b64  string
}

func newMsgGen(seed uint64) *msgGen {
	r := mrand.New(mrand.NewPCG(seed, seed*7+1))
	words := strings.Fields("the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we their can has more will if would about when out so up into them time some what only very new like our just after other could over also first these people may well any years even such most then because where those how each those mail message meeting report invoice please thanks regards attached project schedule review")
	var t strings.Builder
	for t.Len() < 2<<20 {
		line := 0
		for line < 68 {
			w := words[r.IntN(len(words))]
			t.WriteString(w)
			t.WriteByte(' ')
			line += len(w) + 1
		}
		t.WriteString("\r\n")
	}
	raw := make([]byte, 1<<20)
	for i := range raw {
		raw[i] = byte(r.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(raw)
	var b strings.Builder
	for len(enc) > 0 {
		n := min(76, len(enc))
		b.WriteString(enc[:n])
		b.WriteString("\r\n")
		enc = enc[n:]
	}
	return &msgGen{r: r, text: t.String(), b64: b.String()}
}

// textLines returns whole lines of filler text, at least n bytes (n at most
// 1 MB), from a random place.
func (g *msgGen) textLines(n int) string {
	off := g.r.IntN(len(g.text) - n - 200)
	off += strings.Index(g.text[off:], "\r\n") + 2
	end := off + n
	end += strings.Index(g.text[end:], "\r\n") + 2
	return g.text[off:end]
}

// base64Lines returns at least n bytes of base64 lines (of random bytes).
func (g *msgGen) base64Lines(n int) string {
	const line = 78 // 76 characters and CRLF
	lines := (n + line - 1) / line
	total := len(g.b64) / line
	var out strings.Builder
	for lines > 0 {
		k := min(lines, total/2)
		start := g.r.IntN(total - k)
		out.WriteString(g.b64[start*line : (start+k)*line])
		lines -= k
	}
	return out.String()
}

var topics = []string{"the quarterly report", "lunch", "your invoice", "the release", "Re: meeting notes", "travel plans", "the contract", "Fwd: photos", "weekly status", "a question"}

// message returns message number i of about size bytes.
func (g *msgGen) message(i, size int) []byte {
	var m strings.Builder
	m.Grow(size + 1024)
	date := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * 17 * time.Minute)
	fmt.Fprintf(&m, "Return-Path: <sender%d@example.org>\r\nReceived: from mx%d.example.org (mx.example.org [192.0.2.%d]) by mail.example.com with ESMTPS id %x; %s\r\n",
		i%97, i%5, i%250, i*7919, date.Format(time.RFC1123Z))
	fmt.Fprintf(&m, "From: Sender %d <sender%d@example.org>\r\nTo: Recipient <me@example.com>\r\nSubject: Message %d about %s\r\nDate: %s\r\nMessage-ID: <%d.%x@example.org>\r\nMIME-Version: 1.0\r\n",
		i%97, i%97, i, topics[i%len(topics)], date.Format(time.RFC1123Z), i, i*104729)
	body := size - m.Len() - 300
	switch {
	case size >= 20<<10:
		// Text and an attachment.
		text := g.textLines(2 << 10)
		fmt.Fprintf(&m, "Content-Type: multipart/mixed; boundary=\"b1_%d\"\r\n\r\nThis is a multi-part message in MIME format.\r\n\r\n--b1_%d\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s\r\n--b1_%d\r\nContent-Type: application/pdf; name=\"report-%d.pdf\"\r\nContent-Disposition: attachment; filename=\"report-%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			i, i, text, i, i, i)
		m.WriteString(g.base64Lines(body - len(text)))
		fmt.Fprintf(&m, "--b1_%d--\r\n", i)
	case i%2 == 0:
		// Text and HTML alternatives.
		text := g.textLines(max(body/3, 100))
		html := g.textLines(max(body-len(text)-80, 100))
		fmt.Fprintf(&m, "Content-Type: multipart/alternative; boundary=\"alt_%d\"\r\n\r\n--alt_%d\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n%s\r\n--alt_%d\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>%s</p></body></html>\r\n--alt_%d--\r\n",
			i, i, text, i, html, i)
	default:
		fmt.Fprintf(&m, "Content-Type: text/plain; charset=utf-8\r\n\r\n%s", g.textLines(max(body, 100)))
	}
	return []byte(m.String())
}

func ingestItems(accountID string, c *corpus) []db.IngestItem {
	items := make([]db.IngestItem, len(c.msgs))
	for i, raw := range c.msgs {
		uidl := fmt.Sprintf("B%06d", i)
		items[i] = db.IngestItem{Meta: &mailbusv1.IngestMeta{
			AccountId: accountID, Ref: uidl, Upstream: &mailbusv1.UpstreamId{Uidl: uidl}, Size: uint64(len(raw)),
			InternalDate: timestamppb.New(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Minute)),
		}, Raw: raw}
	}
	return items
}

// BenchmarkIngest stores 10,000 messages into an empty POP3 account per
// iteration, in a fresh database each time: through the database layer
// (db.Ingest, 256 messages a transaction) and through the store's gRPC
// IngestMessages stream (a running store with an embedded NATS server, so
// the relay publishes the events meanwhile), for the mixed corpus and for
// 10 KB messages. It reports msgs/s and MB/s (of raw message bytes).
func BenchmarkIngest(b *testing.B) {
	for _, name := range []string{"mixed", "10KB"} {
		for _, backend := range dbtest.Backends() {
			b.Run(backend.Name+"/db/"+name, func(b *testing.B) {
				c := corpusNamed(name)
				ctx := context.Background()
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					d := backend.Open(b)
					acct, err := d.CreateAccount(ctx, pop3Account("bench"))
					if err != nil {
						b.Fatal(err)
					}
					items := ingestItems(acct.Id, c)
					b.StartTimer()
					for off := 0; off < len(items); off += ingestBatch {
						res, _, err := d.Ingest(ctx, items[off:min(off+ingestBatch, len(items))])
						if err != nil {
							b.Fatal(err)
						}
						for _, r := range res {
							if !r.Created {
								b.Fatalf("message %s: %+v", r.Ref, r)
							}
						}
					}
					b.StopTimer()
					d.Close()
				}
				reportIngest(b, c)
			})
			b.Run(backend.Name+"/grpc/"+name, func(b *testing.B) {
				c := corpusNamed(name)
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					e := startStore(b, backend, storeOpts{})
					acct := e.createAccount(b, pop3Account("bench"))
					items := make([]item, len(c.msgs))
					for i, it := range ingestItems(acct.Id, c) {
						items[i] = item{meta: it.Meta, raw: it.Raw}
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
					b.StartTimer()
					res, err := e.ingestStream(ctx, items)
					b.StopTimer()
					cancel()
					if err != nil {
						b.Fatal(err)
					}
					if len(res) != len(items) {
						b.Fatalf("%d results for %d messages", len(res), len(items))
					}
					for _, r := range res {
						if !r.Created {
							b.Fatalf("message %s: %+v", r.Ref, r)
						}
					}
					e.stop()
				}
				reportIngest(b, c)
			})
		}
	}
}

func reportIngest(b *testing.B, c *corpus) {
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N*len(c.msgs))/secs, "msgs/s")
	b.ReportMetric(float64(int64(b.N)*c.bytes)/secs/1e6, "MB/s")
	b.ReportMetric(float64(c.bytes)/1e6, "MB/corpus")
}

// changesFixture is an account with 100,000 messages whose last 1,000
// changes are 500 messages created and 500 older messages updated. It is
// built once per backend per process (it takes a while) and removed after
// the run (TestMain).
type changesFixture struct {
	cfg     db.Config
	d       *db.DB
	account string
	state   uint64
}

const fixtureMessages = 100_000

var fixtures struct {
	mu      sync.Mutex
	m       map[string]*changesFixture
	release []func()
}

func releaseFixtures() {
	fixtures.mu.Lock()
	defer fixtures.mu.Unlock()
	for i := len(fixtures.release) - 1; i >= 0; i-- {
		fixtures.release[i]()
	}
	fixtures.release, fixtures.m = nil, nil
}

func changesFixtureFor(b *testing.B, backend string) *changesFixture {
	fixtures.mu.Lock()
	defer fixtures.mu.Unlock()
	if f, ok := fixtures.m[backend]; ok {
		return f
	}
	cfg := db.Config{Secrets: dbtest.Secrets(b)}
	switch backend {
	case "sqlite":
		dir, err := os.MkdirTemp("", "mailbus-bench-")
		if err != nil {
			b.Fatal(err)
		}
		fixtures.release = append(fixtures.release, func() { os.RemoveAll(dir) })
		cfg.DataDir = dir
	default:
		u, drop := benchPostgres(b)
		fixtures.release = append(fixtures.release, drop)
		cfg.URL = u
	}
	ctx := context.Background()
	start := time.Now()
	d, err := db.Open(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	fixtures.release = append(fixtures.release, func() { d.Close() })
	acct, err := d.CreateAccount(ctx, pop3Account("big"))
	if err != nil {
		b.Fatal(err)
	}
	g := newMsgGen(7)
	var ids []string
	batch := make([]db.IngestItem, 0, ingestBatch)
	flush := func() {
		res, _, err := d.Ingest(ctx, batch)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range res {
			if r.Error != "" {
				b.Fatal(r.Error)
			}
			ids = append(ids, r.MessageId)
		}
		batch = batch[:0]
	}
	for i := range fixtureMessages {
		uidl := fmt.Sprintf("F%06d", i)
		batch = append(batch, db.IngestItem{Meta: &mailbusv1.IngestMeta{AccountId: acct.Id, Ref: uidl, Upstream: &mailbusv1.UpstreamId{Uidl: uidl}}, Raw: g.message(i, 2<<10)})
		if len(batch) == ingestBatch {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	origin := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_DEVICE, DeviceId: "bench"}
	older := ids[:fixtureMessages-500]
	var touched []string
	for i := range 500 {
		touched = append(touched, older[i*len(older)/500])
	}
	_, state, err := d.UpdateFlags(ctx, origin, acct.Id, touched, []string{"\\Seen"}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: built an account of %d messages (state %d) in %v", backend, fixtureMessages, state, time.Since(start).Round(time.Millisecond))
	f := &changesFixture{cfg: cfg, d: d, account: acct.Id, state: state}
	if fixtures.m == nil {
		fixtures.m = map[string]*changesFixture{}
	}
	fixtures.m[backend] = f
	return f
}

// benchPostgres creates a database for a fixture that outlives one
// benchmark; drop removes it.
func benchPostgres(b *testing.B) (string, func()) {
	admin, err := sql.Open("pgx", dbtest.AdminURL())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		if os.Getenv("CI") == "true" {
			b.Fatalf("PostgreSQL at %s is unreachable: %v", dbtest.AdminURL(), err)
		}
		b.Skipf("PostgreSQL unreachable (%v): start it or set MAILBUS_TEST_POSTGRES", err)
	}
	var r [6]byte
	rand.Read(r[:])
	name := "mailbus_bench_" + hex.EncodeToString(r[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		b.Fatalf("create database: %v", err)
	}
	u, err := url.Parse(dbtest.AdminURL())
	if err != nil {
		b.Fatal(err)
	}
	u.Path = "/" + name
	return u.String(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	}
}

// BenchmarkGetChanges asks for the last 1,000 changes (since = state -
// 1000, max_changes 1000) of an account with 100,000 messages: through the
// database layer and through gRPC (a running store on the same database).
// It reports ms/op.
func BenchmarkGetChanges(b *testing.B) {
	for _, backend := range dbtest.Backends() {
		check := func(b *testing.B, ch *mailbusv1.GetChangesResponse, f *changesFixture) {
			if ch.HasMore || ch.NewState != f.state || len(ch.CreatedMessageIds) != 500 || len(ch.UpdatedMessageIds) != 500 {
				b.Fatalf("GetChanges: has_more %v, new_state %d (want %d), %d created, %d updated",
					ch.HasMore, ch.NewState, f.state, len(ch.CreatedMessageIds), len(ch.UpdatedMessageIds))
			}
		}
		b.Run(backend.Name+"/db", func(b *testing.B) {
			f := changesFixtureFor(b, backend.Name)
			ctx := context.Background()
			for b.Loop() {
				ch, err := f.d.GetChanges(ctx, f.account, f.state-1000, 1000)
				if err != nil {
					b.Fatal(err)
				}
				check(b, ch, f)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
		b.Run(backend.Name+"/grpc", func(b *testing.B) {
			f := changesFixtureFor(b, backend.Name)
			e := startStore(b, backend, storeOpts{noNATS: true, dbConfig: &f.cfg})
			ctx := context.Background()
			for b.Loop() {
				ch, err := e.sync.GetChanges(ctx, &mailbusv1.GetChangesRequest{AccountId: f.account, SinceState: f.state - 1000, MaxChanges: 1000})
				if err != nil {
					b.Fatal(err)
				}
				check(b, ch, f)
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}

// BenchmarkIngestClient stores the 10KB corpus (10,000 messages) per
// iteration through the fetchers' ingest client (pkg/ingest) into a fresh
// SQLite store without NATS, over a loopback gRPC connection ("grpc",
// mailbus serve before decision 0045, and the separate fetchers) or the
// store's in-process channel ("inproc", mailbus serve now). Client and
// store run in this process either way, so allocs/op, B/op and cpu-ms/op
// (the process's user and system CPU, from getrusage) count both sides.
//
//	TMPDIR=/dev/shm go test -run='^$' -bench=BenchmarkIngestClient -count=6 ./services/store/store/ | tee out.txt
//	benchstat -col /transport out.txt
func BenchmarkIngestClient(b *testing.B) {
	backend := dbtest.Backends()[0] // SQLite
	for _, name := range []string{"10KB", "mixed"} {
		for _, transport := range []string{"grpc", "inproc"} {
			b.Run("corpus="+name+"/transport="+transport, func(b *testing.B) {
				c := corpusNamed(name)
				b.ReportAllocs()
				var cpu time.Duration
				b.ResetTimer()
				for range b.N {
					b.StopTimer()
					e := startStore(b, backend, storeOpts{noNATS: true, inProcess: transport == "inproc"})
					acct := e.createAccount(b, pop3Account("bench"))
					client := ingest.New(mailbusv1.NewIngestServiceClient(e.connect(b, e.serviceToken)), ingest.Config{})
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
					cpu0 := processCPU(b)
					b.StartTimer()
					s, err := client.Open(ctx, ingest.Options{})
					if err != nil {
						b.Fatal(err)
					}
					for i, raw := range c.msgs {
						meta := &mailbusv1.IngestMeta{AccountId: acct.Id, Ref: fmt.Sprint(i), Size: uint64(len(raw)),
							Upstream: &mailbusv1.UpstreamId{Uidl: fmt.Sprint("u", i)}}
						if _, err := s.Send(meta, bytes.NewReader(raw)); err != nil {
							b.Fatal(err)
						}
					}
					if err := s.Finish(); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					cpu += processCPU(b) - cpu0
					res := s.Take()
					s.Close()
					cancel()
					if len(res) != len(c.msgs) {
						b.Fatalf("%d results for %d messages", len(res), len(c.msgs))
					}
					for _, r := range res {
						if !r.Created {
							b.Fatalf("message %s: %+v", r.Ref, r)
						}
					}
					e.stop()
				}
				b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/op")
				reportIngest(b, c)
			})
		}
	}
}
