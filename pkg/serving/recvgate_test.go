package serving

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

// holdingService's StreamingInputCall reads nothing until the request body
// is held at the gate or the client has sent everything, then reads the
// whole stream, checking the gate at each message.
type holdingService struct {
	testgrpc.UnimplementedTestServiceServer
	t          *testing.T
	clientDone chan struct{}
	sent       *atomic.Int64
	total      int64
}

func (h *holdingService) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	g, _ := stream.Context().Value(recvGateKey{}).(*recvGate)
	var held chan struct{} // nil without a gate: waits for the client only
	if g != nil {
		held = g.held
	}
	select {
	case <-held:
	case <-h.clientDone:
		h.t.Errorf("the client sent all %d bytes ahead of a handler that read nothing", h.total)
	case <-stream.Context().Done():
		return stream.Context().Err()
	}
	if g == nil {
		h.t.Error("no recvGate in the call's context")
	} else if ahead, most := g.ahead(), g.limit+16<<10; ahead > most {
		h.t.Errorf("read %d bytes ahead of the handler, want at most %d", ahead, most)
	}
	if sent := h.sent.Load(); sent >= h.total {
		h.t.Errorf("client sent %d of %d bytes ahead of a handler that read nothing", sent, h.total)
	}
	var got int64
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: int32(got)})
		}
		if err != nil {
			return err
		}
		got += int64(len(req.GetPayload().GetBody()))
	}
}

// TestWebHoldsBackClientStream: grpc-go's ServeHTTP transport reads a
// request body ahead into an unbounded buffer; the gate must hold a
// client that streams faster than the handler reads (gRPC-Web here, or
// Connect: whatever net/http serves) to about one message ahead (decision
// 31, Known cost), and let the whole stream through once the handler
// reads.
func TestWebHoldsBackClientStream(t *testing.T) {
	const (
		maxMessage = 32 << 10
		chunk      = 16 << 10
		total      = 16 << 20
	)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &holdingService{t: t, clientDone: make(chan struct{}), sent: new(atomic.Int64), total: total}
	s, err := New(Config{Name: "test", Listener: lis, Web: &Web{MaxRequestBytes: maxMessage},
		ServerOptions: []grpc.ServerOption{grpc.MaxRecvMsgSize(maxMessage)}})
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(s.GRPC, svc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	// gRPC-Web, as a browser's: native gRPC would go to grpc-go's own
	// transport (TestNativeGRPCFlowControl).
	client := connect.NewClient[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse](
		h2cClient(), "http://"+s.Addr().String()+"/grpc.testing.TestService/StreamingInputCall", connect.WithGRPCWeb())
	stream := client.CallClientStream(ctx)
	payload := make([]byte, chunk)
	sendErr := make(chan error, 1)
	go func() {
		defer close(svc.clientDone)
		for svc.sent.Load() < total {
			if err := stream.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: payload}}); err != nil {
				sendErr <- err
				return
			}
			svc.sent.Add(chunk)
		}
		sendErr <- nil
	}()
	if err := <-sendErr; err != nil {
		t.Fatalf("Send: %v", err)
	}
	resp, err := stream.CloseAndReceive()
	if err != nil {
		t.Fatalf("CloseAndReceive: %v", err)
	}
	if resp.Msg.AggregatedPayloadSize != total {
		t.Errorf("handler received %d bytes, want %d", resp.Msg.AggregatedPayloadSize, total)
	}
}

// h2cClient is an HTTP client that speaks HTTP/2 without TLS.
func h2cClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols}}
}
