// Package accountruntest helps the fetchers' tests prove how an account
// was picked up (decision 0028): a Gate on the fetcher's connection to the
// store says when the store's account-change stream is established and
// can refuse every account list, so that a worker that starts anyway was
// started by the announcement; a Tap in front of an upstream server says
// when a fetcher's connection sent its first command.
package accountruntest

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Gate watches and steers a fetcher's calls to the store. The zero value
// is not usable; call NewGate.
type Gate struct {
	refuseLists atomic.Bool
	lists       atomic.Int64
	ready       chan struct{} // one value per established stream
}

// NewGate returns a Gate that lets everything through.
func NewGate() *Gate { return &Gate{ready: make(chan struct{}, 64)} }

// DialOptions are the options that put the gate on a connection.
func (g *Gate) DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithChainUnaryInterceptor(g.unary), grpc.WithChainStreamInterceptor(g.stream)}
}

// RefuseLists makes every later ListAccounts fail with UNAVAILABLE (on),
// or go through again (off).
func (g *Gate) RefuseLists(on bool) { g.refuseLists.Store(on) }

// Lists is the number of ListAccounts calls made so far.
func (g *Gate) Lists() int64 { return g.lists.Load() }

// WaitWatching waits until a WatchAccounts stream has been established
// (its ready answer received) since the previous WaitWatching, and fails
// the test if none is within d.
func (g *Gate) WaitWatching(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-g.ready:
	case <-time.After(d):
		t.Fatal("the fetcher did not watch the store's account changes")
	}
}

func (g *Gate) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if method == mailbusv1.AccountService_ListAccounts_FullMethodName {
		g.lists.Add(1)
		if g.refuseLists.Load() {
			return status.Error(codes.Unavailable, "accountruntest: account lists refused")
		}
	}
	return invoker(ctx, method, req, reply, cc, opts...)
}

func (g *Gate) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil || method != mailbusv1.IngestService_WatchAccounts_FullMethodName {
		return s, err
	}
	return &readyStream{ClientStream: s, g: g}, nil
}

type readyStream struct {
	grpc.ClientStream
	g *Gate
}

func (s *readyStream) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if r, ok := m.(*mailbusv1.WatchAccountsResponse); ok && err == nil && r.Ready {
		select {
		case s.g.ready <- struct{}{}:
		default:
		}
	}
	return err
}

// Tap is a TCP relay in front of an upstream server that reports when
// each connection's client sends its first bytes (its first command;
// IMAP and POP3 servers speak first, with their greeting).
type Tap struct {
	lis     net.Listener
	backend string
	first   chan time.Time
	mu      sync.Mutex
	conns   []net.Conn
	closed  bool
	wg      sync.WaitGroup
}

// StartTap relays 127.0.0.1:0 to backend until the test ends.
func StartTap(t testing.TB, backend string) *Tap {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &Tap{lis: lis, backend: backend, first: make(chan time.Time, 1024)}
	tp.wg.Add(1)
	go tp.accept()
	t.Cleanup(tp.close)
	return tp
}

// Addr is the address fetchers connect to.
func (tp *Tap) Addr() string { return tp.lis.Addr().String() }

// FirstCommands delivers, for each connection, the time its client's first
// bytes arrived.
func (tp *Tap) FirstCommands() <-chan time.Time { return tp.first }

// WaitFirstCommand waits for the first command of a connection not waited
// for before, and fails the test if none comes within d.
func (tp *Tap) WaitFirstCommand(t testing.TB, d time.Duration) time.Time {
	t.Helper()
	select {
	case at := <-tp.first:
		return at
	case <-time.After(d):
		t.Fatal("no connection sent a command upstream")
		return time.Time{}
	}
}

// Drain forgets the first commands seen so far.
func (tp *Tap) Drain() {
	for {
		select {
		case <-tp.first:
		default:
			return
		}
	}
}

func (tp *Tap) accept() {
	defer tp.wg.Done()
	for {
		c, err := tp.lis.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", tp.backend)
		if err != nil {
			c.Close()
			continue
		}
		if !tp.track(c, up) {
			return
		}
		tp.wg.Add(2)
		go func() {
			defer tp.wg.Done()
			tp.relayClient(c, up)
		}()
		go func() {
			defer tp.wg.Done()
			_, _ = io.Copy(c, up)
			c.Close()
			up.Close()
		}()
	}
}

// track records a pair for close; false when the tap is closed.
func (tp *Tap) track(c, up net.Conn) bool {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	if tp.closed {
		c.Close()
		up.Close()
		return false
	}
	tp.conns = append(tp.conns, c, up)
	return true
}

// relayClient copies the client's bytes upstream, noting when the first
// ones arrive.
func (tp *Tap) relayClient(c, up net.Conn) {
	defer func() { c.Close(); up.Close() }()
	buf := make([]byte, 32<<10)
	n, err := c.Read(buf)
	if n > 0 {
		select {
		case tp.first <- time.Now():
		default:
		}
		if _, err := up.Write(buf[:n]); err != nil {
			return
		}
	}
	if err != nil {
		return
	}
	_, _ = io.Copy(up, c)
}

func (tp *Tap) close() {
	tp.mu.Lock()
	conns := tp.conns
	tp.conns, tp.closed = nil, true
	tp.mu.Unlock()
	tp.lis.Close()
	for _, c := range conns {
		c.Close()
	}
	tp.wg.Wait()
}
