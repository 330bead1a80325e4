package ingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/inproc"
	"github.com/mailbus/mailbus/pkg/ownership"
)

// The real store is in tests/ingest (a module that may depend on the
// store); these tests use a fake store that can be told to misbehave.

// fakeStore is an IngestService whose IngestMessages reads (unless
// stall) and answers each flush with the results of the messages ended
// before it (unless silent).
type fakeStore struct {
	mailbusv1.UnimplementedIngestServiceServer
	stall  bool // never read: the client's sends block
	silent bool // read, never answer
	got    chan []*mailbusv1.IngestMessagesRequest
}

func (f *fakeStore) IngestMessages(stream mailbusv1.IngestService_IngestMessagesServer) error {
	var reqs []*mailbusv1.IngestMessagesRequest
	defer func() { f.got <- reqs }()
	if f.stall {
		<-stream.Context().Done()
		return stream.Context().Err()
	}
	var results []*mailbusv1.IngestResult
	var ref string
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			if !f.silent {
				return stream.Send(&mailbusv1.IngestMessagesResponse{Results: results})
			}
			<-stream.Context().Done()
			return nil
		}
		if err != nil {
			return err
		}
		reqs = append(reqs, req)
		if req.Meta != nil {
			ref = req.Meta.Ref
		}
		if req.EndOfMessage {
			results = append(results, &mailbusv1.IngestResult{Ref: ref, MessageId: "id-" + ref, Created: true})
		}
		if req.Flush && !f.silent {
			if err := stream.Send(&mailbusv1.IngestMessagesResponse{Results: results}); err != nil {
				return err
			}
			results = nil
		}
	}
}

func startFake(t *testing.T, f *fakeStore) mailbusv1.IngestServiceClient {
	t.Helper()
	f.got = make(chan []*mailbusv1.IngestMessagesRequest, 10)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	mailbusv1.RegisterIngestServiceServer(srv, f)
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return mailbusv1.NewIngestServiceClient(conn)
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func meta(ref string, size int) *mailbusv1.IngestMeta {
	return &mailbusv1.IngestMeta{AccountId: "1", Ref: ref, Upstream: &mailbusv1.UpstreamId{Uidl: ref}, Size: uint64(size)}
}

// A message larger than the queue goes out in chunks as it is read: the
// stream never has more than QueueChunks chunk buffers, every request
// carries at most ChunkSize octets, and the store gets the bytes exactly.
func TestChunksBounded(t *testing.T) {
	f := &fakeStore{}
	c := New(startFake(t, f), Config{ChunkSize: 4096, QueueChunks: 2})
	body := bytes.Repeat([]byte("0123456789abcdef"), 100_000) // 1.6 MB
	s, err := c.Open(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, b := range [][]byte{body, {}, []byte("x")} {
		n, err := s.Send(meta(fmt.Sprint(i), len(b)), bytes.NewReader(b))
		if err != nil || n != int64(len(b)) {
			t.Fatalf("Send %d: %d octets, %v", i, n, err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if s.allocated > 2 {
		t.Errorf("%d chunk buffers allocated, want at most 2", s.allocated)
	}
	if rs := s.Take(); len(rs) != 3 {
		t.Errorf("%d results, want 3", len(rs))
	}
	reqs := <-f.got
	var msgs [][]byte
	for _, r := range reqs {
		if len(r.Data) > 4096 {
			t.Fatalf("a request of %d octets", len(r.Data))
		}
		if r.Meta != nil {
			msgs = append(msgs, nil)
		}
		msgs[len(msgs)-1] = append(msgs[len(msgs)-1], r.Data...)
	}
	if len(msgs) != 3 || !bytes.Equal(msgs[0], body) || len(msgs[1]) != 0 || string(msgs[2]) != "x" {
		t.Errorf("the store got %d messages, not the bytes sent", len(msgs))
	}
}

// A store that stops reading, or reads and never answers a flush or the
// end of the stream, has the stream cut by the watchdog: the error wraps
// ErrStalled and is retryable.
func TestWatchdog(t *testing.T) {
	cases := []struct {
		name string
		f    *fakeStore
	}{
		{"never reads", &fakeStore{stall: true}},
		{"never answers", &fakeStore{silent: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := New(startFake(t, tc.f), Config{ChunkSize: 64 << 10, QueueChunks: 2, Timeout: 200 * time.Millisecond})
			s, err := c.Open(testCtx(t), Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			// Larger than gRPC's flow-control window, so that a store
			// that never reads blocks the sends.
			body := bytes.Repeat([]byte("x"), 32<<20)
			_, err = s.Send(meta("0", len(body)), bytes.NewReader(body))
			if err == nil {
				err = s.Finish()
			}
			if !errors.Is(err, ErrStalled) || Classify(err) != Retryable {
				t.Fatalf("got %v (%v), want ErrStalled, retryable", err, Classify(err))
			}
		})
	}
}

// failingReader yields n octets, then fails.
type failingReader struct{ n int }

var errUpstream = errors.New("upstream connection reset")

func (r *failingReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errUpstream
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

// A body that fails to read leaves its message half-sent: the error is a
// *BodyError, Send and Finish refuse to go on, and Abandon commits the
// messages sent in full (their results arrive) and cuts the stream
// without the half-sent message's end.
func TestAbandonHalfSent(t *testing.T) {
	f := &fakeStore{}
	c := New(startFake(t, f), Config{ChunkSize: 1024})
	s, err := c.Open(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(meta("0", 10), bytes.NewReader([]byte("complete\r\n"))); err != nil {
		t.Fatal(err)
	}
	_, err = s.Send(meta("1", 5000), &failingReader{n: 3000})
	var be *BodyError
	if !errors.As(err, &be) || !errors.Is(err, errUpstream) {
		t.Fatalf("Send of a failing body: %v, want a BodyError", err)
	}
	if _, err := s.Send(meta("2", 1), bytes.NewReader([]byte("x"))); !errors.Is(err, ErrOpenMessage) {
		t.Errorf("Send after a half-sent message: %v, want ErrOpenMessage", err)
	}
	if err := s.Finish(); !errors.Is(err, ErrOpenMessage) {
		t.Errorf("Finish with a half-sent message: %v, want ErrOpenMessage", err)
	}
	s.Abandon(testCtx(t))
	rs := s.Take()
	if len(rs) != 1 || rs[0].Ref != "0" {
		t.Errorf("results after Abandon: %v, want message 0's", rs)
	}
	reqs := <-f.got
	for _, r := range reqs {
		if r.Meta != nil && r.Meta.Ref == "1" && r.EndOfMessage {
			t.Fatal("the half-sent message was ended")
		}
		if r.Meta == nil && r.EndOfMessage && !r.Flush {
			// only message 0's single request may end a message
			t.Fatal("the half-sent message was ended")
		}
	}
	if _, err := s.Send(meta("3", 1), bytes.NewReader([]byte("x"))); err == nil {
		t.Error("Send on an abandoned stream succeeded")
	}
}

func TestClassify(t *testing.T) {
	stale := status.New(codes.FailedPrecondition, "stale lease")
	stale, _ = stale.WithDetails(&errdetails.ErrorInfo{Reason: ownership.StaleLeaseReason, Domain: "mailbus.v1"})
	cases := []struct {
		err  error
		want Class
	}{
		{fmt.Errorf("ingest: %w", stale.Err()), Fenced},
		{status.Error(codes.FailedPrecondition, "something else"), Permanent},
		{fmt.Errorf("ingest: %w", status.Error(codes.NotFound, "no account")), Permanent},
		{status.Error(codes.InvalidArgument, "bad stream"), Permanent},
		{status.Error(codes.Unauthenticated, "token"), Permanent},
		{status.Error(codes.Unavailable, "down"), Retryable},
		{status.Error(codes.ResourceExhausted, "busy"), Retryable},
		{status.Error(codes.Internal, "bug or disk"), Retryable},
		{fmt.Errorf("x: %w", ErrStalled), Retryable},
		{&BodyError{status.Error(codes.InvalidArgument, "not the store's")}, Retryable},
		{context.Canceled, Retryable},
		{errors.New("connection reset"), Retryable},
	}
	for _, c := range cases {
		if got := Classify(c.err); got != c.want {
			t.Errorf("Classify(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}

// A stream used after Finish refuses with an error instead of panicking
// (a send on its closed queue), and Abandon and Close after it are
// harmless.
func TestUseAfterFinish(t *testing.T) {
	c := New(startFake(t, &fakeStore{}), Config{ChunkSize: 1024})
	s, err := c.Open(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(meta("0", 1), bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Send(meta("1", 1), bytes.NewReader([]byte("y"))); !errors.Is(err, errClosed) {
		t.Errorf("Send after Finish: %v, want errClosed", err)
	}
	if err := s.Flush(); !errors.Is(err, errClosed) {
		t.Errorf("Flush after Finish: %v, want errClosed", err)
	}
	s.Abandon(testCtx(t))
	s.Close()
	if rs := s.Take(); len(rs) != 1 || rs[0].Ref != "0" {
		t.Errorf("results: %v, want message 0's", rs)
	}
}

// watchedReader yields x forever and records a Read made after its
// stream had failed.
type watchedReader struct {
	s        *Stream
	lateRead bool
}

func (r *watchedReader) Read(p []byte) (int, error) {
	if r.s.failure() != nil {
		r.lateRead = true
	}
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

// A stream that fails while Send waits for a free chunk buffer (the
// watchdog cuts a store that stopped reading) reads nothing more of the
// body from upstream.
func TestNoReadAfterFailure(t *testing.T) {
	c := New(startFake(t, &fakeStore{stall: true}), Config{ChunkSize: 64 << 10, QueueChunks: 2, Timeout: 200 * time.Millisecond})
	s, err := c.Open(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := &watchedReader{s: s}
	if _, err := s.Send(meta("0", 1<<30), r); !errors.Is(err, ErrStalled) {
		t.Fatalf("Send: %v, want ErrStalled", err)
	}
	if r.lateRead {
		t.Error("the body was read after the stream had failed")
	}
}

// slowReader yields its data in two halves with a pause between them
// longer than the watchdog's bound: an upstream that is slow while the
// client owes the store nothing.
type slowReader struct {
	data  []byte
	pause time.Duration
	half  bool
}

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	if r.half {
		time.Sleep(r.pause)
	}
	k := min(len(p), max(len(r.data)/2, 1))
	if r.half {
		k = min(len(p), len(r.data))
	}
	n := copy(p, r.data[:k])
	r.data, r.half = r.data[n:], true
	return n, nil
}

// A slow upstream between flushes does not trip the watchdog: after a
// flush the store answered, a message whose body pauses for several
// watchdog bounds (mid-body and before the next message) is still sent
// and stored; the watchdog waits only on what the store owes.
func TestWatchdogSlowUpstream(t *testing.T) {
	const timeout = 100 * time.Millisecond
	c := New(startFake(t, &fakeStore{}), Config{ChunkSize: 1024, Timeout: timeout})
	s, err := c.Open(testCtx(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Send(meta("0", 1), bytes.NewReader([]byte("x"))); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// Messages sent and not flushed are not owed either.
	for i := 1; i <= 2; i++ {
		body := bytes.Repeat([]byte("y"), 3000)
		if _, err := s.Send(meta(fmt.Sprint(i), len(body)), &slowReader{data: body, pause: 5 * timeout}); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	if rs := s.Take(); len(rs) != 3 {
		t.Errorf("%d results, want 3", len(rs))
	}
}

// startInProcess serves f on an in-process channel that passes
// IngestMessages by reference, as mailbus serve's store does.
func startInProcess(t *testing.T, f *fakeStore) mailbusv1.IngestServiceClient {
	t.Helper()
	f.got = make(chan []*mailbusv1.IngestMessagesRequest, 10)
	ch := inproc.New()
	mailbusv1.RegisterIngestServiceServer(ch, f)
	t.Cleanup(ch.Serve(inproc.ServeOptions{Shared: []string{mailbusv1.IngestService_IngestMessages_FullMethodName}}))
	return mailbusv1.NewIngestServiceClient(ch.Conn(nil))
}

// On a channel that passes requests by reference, the store keeps every
// request it got, and each still holds the bytes sent: the client never
// reuses a buffer it handed over. Messages of their declared size arrive
// in buffers of exactly that size (no slack for the store to copy away),
// a larger one in chunks, and one smaller than declared whole.
func TestSharedBuffersNotReused(t *testing.T) {
	f := &fakeStore{}
	c := New(startInProcess(t, f), Config{ChunkSize: 4096, QueueChunks: 2})
	s, err := c.Open(testCtx(t), Options{FlushMessages: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.shared {
		t.Error("the stream does not see that the channel shares its requests")
	}
	type msg struct {
		body     []byte
		declared int
	}
	var msgs []msg
	for i := range 20 {
		b := bytes.Repeat([]byte{byte('a' + i)}, 100+i*997)
		if i == 15 {
			b = bytes.Repeat([]byte{'z'}, 2*c.cfg.ChunkSize) // two chunks exactly
		}
		declared := len(b)
		switch i % 5 {
		case 1:
			declared = len(b) / 2 // more than declared
		case 2:
			declared = len(b) + 10 // less than declared
		case 3:
			declared = 0 // none
		case 4:
			declared = len(b) - 1 // one octet more than declared
		}
		msgs = append(msgs, msg{b, declared})
		if _, err := s.Send(meta(fmt.Sprint(i), declared), bytes.NewReader(b)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
	}
	if err := s.Finish(); err != nil {
		t.Fatal(err)
	}
	reqs := <-f.got
	var got [][]byte
	var cur []byte
	var firstCap, requests []int
	for _, r := range reqs {
		if r.Meta != nil {
			cur = nil
			firstCap = append(firstCap, cap(r.Data))
			requests = append(requests, 0)
		}
		if r.Meta != nil || len(r.Data) > 0 || r.EndOfMessage {
			requests[len(requests)-1]++
		}
		if len(r.Data) > c.cfg.ChunkSize {
			t.Errorf("a request of %d octets; want at most the chunk size", len(r.Data))
		}
		cur = append(cur, r.Data...)
		if r.EndOfMessage {
			got = append(got, cur)
		}
	}
	if len(got) != len(msgs) {
		t.Fatalf("the store got %d messages; want %d", len(got), len(msgs))
	}
	for i, m := range msgs {
		if !bytes.Equal(got[i], m.body) {
			t.Errorf("message %d: the store holds other bytes than were sent (a buffer reused?)", i)
		}
		if m.declared == len(m.body) && len(m.body) <= c.cfg.ChunkSize && firstCap[i] != len(m.body) {
			t.Errorf("message %d of its declared %d octets came in a buffer of %d", i, m.declared, firstCap[i])
		}
		if chunks := (len(m.body) + c.cfg.ChunkSize - 1) / c.cfg.ChunkSize; m.declared == len(m.body) && requests[i] != chunks {
			t.Errorf("message %d of its declared size (%d chunks) came in %d requests; want its end with its last chunk", i, chunks, requests[i])
		}
	}
}
