package pop3fetcher_test

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// cut says where a cutConn cuts the ingest stream.
type cut int

const (
	noCut cut = iota
	// cutBeforeCommit cuts the stream when the fetcher ends it, before
	// the store commits: every message has been retrieved, none stored.
	cutBeforeCommit
	// cutAfterCommit lets the store commit and answer, then cuts the
	// stream before the fetcher sees the answer: the messages are stored,
	// the fetcher does not know it.
	cutAfterCommit
)

var errCut = errors.New("test: ingest stream cut")

// cutConn is a connection to the store whose IngestMessages streams are
// cut as c says, like a fetcher that crashes at that point.
func (e *env) cutConn(t testing.TB, c cut) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if method != mailbusv1.IngestService_IngestMessages_FullMethodName {
				return streamer(ctx, desc, cc, method, opts...)
			}
			ctx, cancel := context.WithCancel(ctx)
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil {
				cancel()
				return nil, err
			}
			return &cutStream{ClientStream: cs, cancel: cancel, cut: c}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

type cutStream struct {
	grpc.ClientStream
	cancel context.CancelFunc
	cut    cut
}

func (s *cutStream) SendMsg(m any) error {
	if r, ok := m.(*mailbusv1.IngestMessagesRequest); ok && r.Flush && s.cut == cutBeforeCommit {
		s.cancel()
		return errCut
	}
	return s.ClientStream.SendMsg(m)
}

func (s *cutStream) CloseSend() error {
	if s.cut == cutBeforeCommit {
		s.cancel()
		return errCut
	}
	return s.ClientStream.CloseSend()
}

func (s *cutStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil && s.cut == cutAfterCommit && len(m.(*mailbusv1.IngestMessagesResponse).Results) > 0 {
		s.cancel()
		return errCut
	}
	return err
}

// TestCrashSafety cuts a delete-mode pass at each point between retrieval
// and the server's deletion, then runs a new fetcher (a restart): the store
// must hold each message exactly once, with one message.created event each,
// and the maildrop must end empty.
func TestCrashSafety(t *testing.T) {
	cases := []struct {
		name string
		// cut and fault make the first pass fail.
		cut   cut
		fault *pop3test.Fault
		// after the first pass: how many messages the store holds, and
		// how many the server.
		storedAfter, serverAfter int
	}{
		{name: "after RETR before the ingest commit", cut: cutBeforeCommit, storedAfter: 0, serverAfter: 4},
		{name: "after the commit before the ack arrives", cut: cutAfterCommit, storedAfter: 4, serverAfter: 4},
		{name: "after the ack before DELE", fault: ptr(pop3test.Drop("DELE", 0).Once()), storedAfter: 4, serverAfter: 4},
		{name: "after DELE before QUIT", fault: ptr(pop3test.Stall("QUIT").Once()), storedAfter: 4, serverAfter: 4},
		{name: "QUIT applied but its answer lost", fault: ptr(pop3test.Drop("QUIT", 0).Once()), storedAfter: 4, serverAfter: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := startStore(t)
			msgs := someMessages(1, 4)
			opts := []pop3test.Option{pop3test.WithMailbox("bob", "pw", msgs...)}
			if tc.fault != nil {
				opts = append(opts, pop3test.WithFault(*tc.fault))
			}
			srv := pop3test.NewServer(t, opts...)
			acct := e.fakeAccount(t, srv, "bob", "pw", dele)
			f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) {
				c.Timeout = 500 * time.Millisecond
				if tc.cut != noCut {
					c.Conn = e.cutConn(t, tc.cut)
				}
			})
			if _, err := f.Poll(callCtx(t), acct); err == nil {
				t.Fatal("the cut pass succeeded")
			}
			idle(t, srv)
			if n := len(e.stored(t, acct.Id)); n != tc.storedAfter {
				t.Errorf("after the cut the store holds %d messages, want %d", n, tc.storedAfter)
			}
			if n := len(srv.Messages("bob")); n != tc.serverAfter {
				t.Errorf("after the cut the server holds %d messages, want %d", n, tc.serverAfter)
			}

			restarted, _ := e.newFetcher(t)
			res := poll(t, restarted, acct)
			idle(t, srv)
			stored := e.checkStoredExactly(t, acct.Id, wires(msgs))
			e.checkOneEventEach(t, acct.Id, stored)
			if n := len(srv.Messages("bob")); n != 0 {
				t.Errorf("after the restart the server still holds %d messages (%+v)", n, res)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// hungStream is an ingest stream whose store never answers.
type hungStream struct{ grpc.ClientStream }

func (s *hungStream) RecvMsg(any) error {
	<-s.Context().Done()
	return s.Context().Err()
}

// TestStoreHang: a store that takes the messages but never answers does
// not hang the pass: the stream is cut after Config.StoreTimeout, the pass
// fails (temporary, kind store), nothing is deleted, and a later pass with
// a healthy store finishes the job.
func TestStoreHang(t *testing.T) {
	e := startStore(t)
	msgs := someMessages(1, 3)
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", msgs...))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			cs, err := streamer(ctx, desc, cc, method, opts...)
			if err != nil || method != mailbusv1.IngestService_IngestMessages_FullMethodName {
				return cs, err
			}
			return &hungStream{cs}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) {
		c.Conn = conn
		c.StoreTimeout = 300 * time.Millisecond
	})
	_, err = f.Poll(callCtx(t), acct)
	var pe *pop3fetcher.PassError
	if !errors.As(err, &pe) || pe.Kind != pop3fetcher.KindStore || pe.Permanent {
		t.Fatalf("pass: %v, want a temporary store error", err)
	}
	idle(t, srv)
	if n := len(srv.Messages("bob")); n != 3 {
		t.Errorf("the server holds %d messages, want 3", n)
	}
	f2, _ := e.newFetcher(t)
	poll(t, f2, acct)
	idle(t, srv)
	e.checkStoredExactly(t, acct.Id, wires(msgs))
	if n := len(srv.Messages("bob")); n != 0 {
		t.Errorf("the server holds %d messages, want 0", n)
	}
}

// TestIngestReopenFailure: a message turns out too large while it is read
// (LIST under-reported it), so the fetcher abandons the ingest stream and
// opens a new one for the rest; when that open fails, the pass fails
// (temporary, kind store) instead of crashing, the message stored before
// is deleted, and the rest stays on the server.
func TestIngestReopenFailure(t *testing.T) {
	e := startStore(t)
	first := pop3test.Message{UID: "s1", Data: message(1)}
	liar := pop3test.Message{UID: "liar", Data: bytes.Repeat([]byte("y"), 1000)}
	last := pop3test.Message{UID: "s3", Data: message(3)}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("bob", "pw", first, liar, last))
	acct := e.fakeAccount(t, srv, "bob", "pw", dele)
	var opens atomic.Int32
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(e.serviceToken),
		grpc.WithStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			if method == mailbusv1.IngestService_IngestMessages_FullMethodName && opens.Add(1) >= 2 {
				return nil, status.Error(codes.Unavailable, "store restarting")
			}
			return streamer(ctx, desc, cc, method, opts...)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	// LIST says 998 octets (the limit), RETR sends 1000 and a CRLF.
	srv.InjectFault(listReply(len(first.Data), 998, len(last.Data)))
	f, _ := e.newFetcher(t, func(c *pop3fetcher.Config) { c.Conn = conn; c.MaxMessageSize = 998 })
	_, err = f.Poll(callCtx(t), acct)
	var pe *pop3fetcher.PassError
	if !errors.As(err, &pe) || pe.Kind != pop3fetcher.KindStore || pe.Permanent {
		t.Fatalf("pass: %v, want a temporary store error", err)
	}
	if opens.Load() != 2 {
		t.Errorf("%d ingest streams opened, want 2", opens.Load())
	}
	idle(t, srv)
	e.checkStoredExactly(t, acct.Id, wires([]pop3test.Message{first}))
	if n := len(srv.Messages("bob")); n != 2 {
		t.Errorf("the server holds %d messages, want 2", n)
	}
}
