package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// stuckMessages is how many messages a stuck client sends: with an answer
// of 1 MiB each, more than HTTP/2 flow control lets the store send
// unread.
const stuckMessages = 32

// sendUnread sends stuckMessages messages of 40 KiB (kept as files on
// SQLite) to stream, each flushed, with a ref of 1 MiB echoed in each
// answer, and never reads the answers: the store commits what it can, then
// blocks sending.
func sendUnread(stream mailbusv1.IngestService_IngestMessagesClient, acct string) {
	bigRef := strings.Repeat("r", 1<<20)
	for i := range stuckMessages {
		it := pop3Item(acct, fmt.Sprintf("stuck-%d", i), append(testMessage(i), bytes.Repeat([]byte{byte('a' + i%26)}, 40<<10)...))
		it.meta.Ref = bigRef
		if sendItem(stream, it) != nil {
			return
		}
		if stream.Send(&mailbusv1.IngestMessagesRequest{Flush: true}) != nil {
			return
		}
	}
}

// storedUIDLs counts the messages stored for a POP3 account.
func storedUIDLs(t *testing.T, e *env, acct string) int {
	t.Helper()
	ids, err := e.ingest.ListUpstreamIds(callCtx(t), &mailbusv1.ListUpstreamIdsRequest{AccountId: acct})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for {
		r, err := ids.Recv()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
		n += len(r.Messages)
	}
}

// One fetcher that stops reading its answers (stopped, or slow) blocks
// only its own stream: retention passes go on, and other fetchers'
// ingest of large bodies (kept as files, which the collector and ingest
// share a lock over) goes through.
func TestStuckIngestStreamHoldsUpNoOne(t *testing.T) {
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true, pruneInterval: 100 * time.Millisecond})
	acct := e.createAccount(t, pop3Account("stuck"))
	other := e.createAccount(t, pop3Account("other"))

	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	stuck, err := e.ingest.IngestMessages(sctx)
	if err != nil {
		t.Fatal(err)
	}
	go sendUnread(stuck, acct.Id)
	waitFor(t, waitLong, "the stuck stream's first message stored", func() bool { return storedUIDLs(t, e, acct.Id) > 0 })
	// Until the store blocks sending answers, with a batch ready to
	// commit, and retention passes run meanwhile (no timing is asserted:
	// a shorter wait only shows less).
	time.Sleep(time.Second)

	res, err := e.ingestStream(callCtx(t), []item{pop3Item(other.Id, "other-1", append(testMessage(100), bytes.Repeat([]byte("z"), 40<<10)...))})
	if err != nil || len(res) != 1 || !res[0].Created {
		t.Fatalf("another account's ingest of a 40 KiB message while a stream is stuck: %v %v", res, err)
	}
	if n := storedUIDLs(t, e, acct.Id); n >= stuckMessages {
		t.Fatalf("the stuck stream stored all its %d messages: it was not stuck, the test shows nothing", n)
	}
}

// vanishingLink forwards one TCP connection to target until vanish is
// called; from then on it drops what either side sends, as a network does
// for a host that is gone. storeClosed is closed when the target closes
// its side.
type vanishingLink struct {
	ln          net.Listener
	target      string
	gone        atomic.Bool
	storeClosed chan struct{}
	once        sync.Once
}

func newVanishingLink(t *testing.T, target string) *vanishingLink {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &vanishingLink{ln: ln, target: target, storeClosed: make(chan struct{})}
	t.Cleanup(func() { ln.Close() })
	go l.serve(t)
	return l
}

func (l *vanishingLink) serve(t *testing.T) {
	client, err := l.ln.Accept()
	if err != nil {
		return
	}
	defer client.Close()
	server, err := net.Dial("tcp", l.target)
	if err != nil {
		t.Errorf("link: %v", err)
		return
	}
	defer server.Close()
	done := make(chan struct{})
	go func() {
		l.pipe(server, client)
		close(done)
	}()
	l.pipe(client, server)
	l.once.Do(func() { close(l.storeClosed) })
	<-done
}

// pipe copies from src to dst until src ends, dropping the bytes once
// the link is gone.
func (l *vanishingLink) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !l.gone.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil && !l.gone.Load() {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *vanishingLink) vanish() { l.gone.Store(true) }

// A fetcher that vanishes from the network while the store waits to send
// it answers does not keep its stream forever: the store's keepalive
// pings go unanswered, it closes the connection, and the stream ends.
func TestVanishedClientStreamEnds(t *testing.T) {
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true, keepalive: time.Second})
	acct := e.createAccount(t, pop3Account("vanishing"))
	link := newVanishingLink(t, e.addr)
	conn, err := grpc.NewClient(link.ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	sctx, scancel := context.WithCancel(context.Background())
	defer scancel()
	stream, err := mailbusv1.NewIngestServiceClient(conn).IngestMessages(sctx)
	if err != nil {
		t.Fatal(err)
	}
	go sendUnread(stream, acct.Id)
	waitFor(t, waitLong, "the first message stored", func() bool { return storedUIDLs(t, e, acct.Id) > 0 })
	link.vanish()
	select {
	case <-link.storeClosed:
	case <-time.After(waitLong):
		t.Fatalf("the store kept the connection of a vanished client for %v", waitLong)
	}
	waitFor(t, waitLong, "the vanished client's IngestMessages to end", func() bool {
		return requestsOf(t, e, "IngestMessages") > 0
	})
}

// requestsOf counts the finished calls of the store's method whose full
// name ends with method.
func requestsOf(t *testing.T, e *env, method string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatalf("gather metrics: %v", err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != "mailbus_grpc_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && strings.HasSuffix(l.GetValue(), method) {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}
