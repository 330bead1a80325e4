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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// splitService records, for each call, whether net/http served it (the
// call's context derives from the http.Request's), and holds
// StreamingInputCall until its client is held back.
type splitService struct {
	testgrpc.UnimplementedTestServiceServer
	t          *testing.T
	viaNetHTTP chan bool
	clientDone chan struct{}
	sent       *atomic.Int64
	total      int64
}

func servedByNetHTTP(ctx context.Context) bool { return ctx.Value(http.ServerContextKey) != nil }

func (s *splitService) UnaryCall(ctx context.Context, _ *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	s.viaNetHTTP <- servedByNetHTTP(ctx)
	return &testgrpc.SimpleResponse{}, nil
}

// StreamingInputCall reads nothing until the client has sent nothing more
// for a while (held back) or has sent everything (not held back: the
// test fails), then reads the whole stream.
func (s *splitService) StreamingInputCall(stream testgrpc.TestService_StreamingInputCallServer) error {
	ctx := stream.Context()
	if servedByNetHTTP(ctx) {
		s.t.Error("native gRPC call served by net/http, want grpc-go's transport")
	}
	if ctx.Value(recvGateKey{}) != nil {
		s.t.Error("native gRPC call read through the recv gate")
	}
	// Quiescence only decides when to start reading: a client that is
	// not held back sends everything and fails the test whatever the
	// timing.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last, still := int64(-1), 0
	for still < 4 {
		select {
		case <-s.clientDone:
			s.t.Errorf("the client sent all %d bytes ahead of a handler that read nothing", s.total)
			still = 4
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if sent := s.sent.Load(); sent == last {
				still++
			} else {
				last, still = sent, 0
			}
		}
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

// startSplit runs a Web server with svc until the test ends.
func startSplit(t *testing.T, svc testgrpc.TestServiceServer, web *Web, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Name: "test", Listener: lis, Web: web, ServerOptions: opts})
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(s.GRPC, svc)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s.Addr().String()
}

func dialNative(t *testing.T, addr string) testgrpc.TestServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testgrpc.NewTestServiceClient(cc)
}

// TestNativeGRPCFlowControl: a native gRPC client stream goes to grpc-go's
// own transport (not net/http, not the recv gate), whose HTTP/2 flow
// control holds back a client that sends faster than its handler reads
// (through net/http, without the gate, the server took all it was sent:
// decision 31, Known cost); once the handler reads, all of it arrives.
func TestNativeGRPCFlowControl(t *testing.T) {
	const (
		maxMessage = 128 << 10
		chunk      = 64 << 10
		// More than grpc-go's largest windows (16 MiB for the stream,
		// as for the connection, with its BDP estimation).
		total = 64 << 20
	)
	svc := &splitService{t: t, clientDone: make(chan struct{}), sent: new(atomic.Int64), total: total}
	addr := startSplit(t, svc, &Web{MaxRequestBytes: maxMessage}, grpc.MaxRecvMsgSize(maxMessage))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := dialNative(t, addr).StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
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
	resp, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatalf("CloseAndRecv: %v", err)
	}
	if resp.AggregatedPayloadSize != total {
		t.Errorf("handler received %d bytes, want %d", resp.AggregatedPayloadSize, total)
	}
}

// TestSplitByFirstRequest: on one port, native gRPC is served by grpc-go's
// transport and every other protocol by net/http (several calls on one
// HTTP/2 connection: the SETTINGS the split wrote does not break it), and
// Web.Admit refuses a call from its headers on both, with its code.
func TestSplitByFirstRequest(t *testing.T) {
	svc := &splitService{t: t, viaNetHTTP: make(chan bool, 32)}
	var admitted atomic.Int64
	web := &Web{Admit: func(ctx context.Context, method string, md metadata.MD) error {
		if method != "/grpc.testing.TestService/UnaryCall" {
			t.Errorf("Admit asked about %q", method)
		}
		admitted.Add(1)
		if len(md.Get("x-deny")) > 0 {
			return status.Error(codes.PermissionDenied, "denied from the headers")
		}
		return nil
	}}
	addr := startSplit(t, svc, web)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	native := dialNative(t, addr)
	if _, err := native.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("native gRPC: %v", err)
	}
	if <-svc.viaNetHTTP {
		t.Error("native gRPC served by net/http, want grpc-go's transport")
	}
	denied := metadata.AppendToOutgoingContext(ctx, "x-deny", "1")
	if _, err := native.UnaryCall(denied, &testgrpc.SimpleRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("native gRPC refused by Admit: %v, want PermissionDenied", err)
		if err == nil {
			<-svc.viaNetHTTP
		}
	}

	url := "http://" + addr + "/grpc.testing.TestService/UnaryCall"
	for name, client := range map[string]*connect.Client[testgrpc.SimpleRequest, testgrpc.SimpleResponse]{
		"Connect over HTTP/1.1": connect.NewClient[testgrpc.SimpleRequest, testgrpc.SimpleResponse](http.DefaultClient, url),
		"Connect over h2c":      connect.NewClient[testgrpc.SimpleRequest, testgrpc.SimpleResponse](h2cClient(), url),
		"gRPC-Web over h2c":     connect.NewClient[testgrpc.SimpleRequest, testgrpc.SimpleResponse](h2cClient(), url, connect.WithGRPCWeb()),
	} {
		for i := range 3 {
			if _, err := client.CallUnary(ctx, connect.NewRequest(&testgrpc.SimpleRequest{})); err != nil {
				t.Fatalf("%s, call %d: %v", name, i+1, err)
			}
			if !<-svc.viaNetHTTP {
				t.Errorf("%s served by grpc-go's own transport, want net/http", name)
			}
		}
		req := connect.NewRequest(&testgrpc.SimpleRequest{})
		req.Header().Set("X-Deny", "1")
		if _, err := client.CallUnary(ctx, req); connect.CodeOf(err) != connect.CodePermissionDenied {
			t.Errorf("%s refused by Admit: %v, want permission_denied", name, err)
			if err == nil {
				<-svc.viaNetHTTP
			}
		}
	}
	// 2 native calls and 4 for each of the 3 others.
	if got := admitted.Load(); got != 2+3*4 {
		t.Errorf("Admit asked %d times, want %d", got, 2+3*4)
	}
}
