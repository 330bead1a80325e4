package serving

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"

	"google.golang.org/grpc/stats"
)

// gateSlack is how much a gRPC request body may be read ahead of its
// handler beyond one message of the largest size: a few HTTP/2 frames.
const gateSlack = 64 << 10

// recvGated wraps the grpc.Server's ServeHTTP so that a request body is
// read at most about one message (maxMessage) plus gateSlack ahead of
// what the handler has received. grpc-go's ServeHTTP transport reads the
// body in a goroutine into an unbounded buffer and has no flow control of
// its own, so without the gate a client streaming faster than the handler
// reads (IngestMessages while the store commits) makes the server buffer
// all it sends. A Read blocked at the gate stops Go's HTTP/2 server from
// giving the client window back, which holds the client back as grpc-go's
// own transport does (decision 31, Known cost). The handler's progress is
// counted by recvCounter, the grpc.Server's stats handler.
func recvGated(next http.Handler, maxMessage uint32) http.Handler {
	limit := int64(maxMessage) + gateSlack
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g := &recvGate{body: r.Body, limit: limit, ctx: r.Context(), wake: make(chan struct{}, 1),
			closed: make(chan struct{}), held: make(chan struct{})}
		r2 := r.WithContext(context.WithValue(r.Context(), recvGateKey{}, g))
		r2.Body = g
		next.ServeHTTP(w, r2)
	})
}

type recvGateKey struct{}

// errGateClosed is what a Read blocked at the gate returns once grpc-go
// closes the body (the call is over).
var errGateClosed = errors.New("serving: request body closed")

// recvGate is a request body that lets its reader get at most limit bytes
// ahead of those the handler has received.
type recvGate struct {
	body      io.ReadCloser
	limit     int64
	ctx       context.Context
	wake      chan struct{} // the handler received a message
	closed    chan struct{}
	closeOnce sync.Once
	// held is closed the first time a Read waits at the gate.
	held     chan struct{}
	heldOnce sync.Once

	mu       sync.Mutex
	read     int64 // bytes read from body
	received int64 // bytes of the messages the handler received
}

func (g *recvGate) ahead() int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.read - g.received
}

// Read waits until the handler is less than limit bytes behind, then reads.
func (g *recvGate) Read(p []byte) (int, error) {
	for g.ahead() >= g.limit {
		g.heldOnce.Do(func() { close(g.held) })
		select {
		case <-g.wake:
		case <-g.closed:
			return 0, errGateClosed
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
	}
	n, err := g.body.Read(p)
	g.mu.Lock()
	g.read += int64(n)
	g.mu.Unlock()
	return n, err
}

// Close ends a Read waiting at the gate and closes the body.
func (g *recvGate) Close() error {
	g.closeOnce.Do(func() { close(g.closed) })
	return g.body.Close()
}

// receivedMessage records that the handler received a message of n bytes
// on the wire (header included).
func (g *recvGate) receivedMessage(n int) {
	g.mu.Lock()
	g.received += int64(n)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// recvCounter is a grpc stats.Handler telling the recvGate of a call
// (found in the call's context, which grpc-go derives from the request's)
// each message its handler receives.
type recvCounter struct{}

func (recvCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (recvCounter) HandleRPC(ctx context.Context, s stats.RPCStats) {
	in, ok := s.(*stats.InPayload)
	if !ok {
		return
	}
	if g, ok := ctx.Value(recvGateKey{}).(*recvGate); ok {
		g.receivedMessage(in.WireLength)
	}
}

func (recvCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (recvCounter) HandleConn(context.Context, stats.ConnStats) {}
