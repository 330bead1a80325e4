package inproc

import (
	"context"
	"errors"
	"io"
	"runtime"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// fakeIngest records what its handlers saw.
type fakeIngest struct {
	mailbusv1.UnimplementedIngestServiceServer
	got       chan *mailbusv1.IngestMessagesRequest
	ended     chan error // IngestMessages's context error when it returned
	reqs      chan *mailbusv1.ClaimAccountRequest
	peers     chan *peer.Peer
	responses []*mailbusv1.UpstreamMessage
}

func (f *fakeIngest) ClaimAccount(ctx context.Context, req *mailbusv1.ClaimAccountRequest) (*mailbusv1.ClaimAccountResponse, error) {
	p, _ := peer.FromContext(ctx)
	f.peers <- p
	f.reqs <- req
	if req.AccountId == "refuse" {
		return nil, status.Error(codes.FailedPrecondition, "refused")
	}
	if req.AccountId == "plain" {
		return nil, errors.New("a plain error")
	}
	if req.AccountId == "wait" {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	grpc.SetHeader(ctx, metadata.Pairs("h", "1"))
	return &mailbusv1.ClaimAccountResponse{}, nil
}

func (f *fakeIngest) IngestMessages(stream mailbusv1.IngestService_IngestMessagesServer) error {
	defer func() { f.ended <- stream.Context().Err() }()
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		f.got <- req
		if req.Meta != nil && req.Meta.Ref == "fail" {
			return status.Error(codes.FailedPrecondition, "stale lease")
		}
		if req.EndOfMessage {
			if err := stream.Send(&mailbusv1.IngestMessagesResponse{Results: []*mailbusv1.IngestResult{{Ref: req.GetMeta().GetRef(), Created: true}}}); err != nil {
				return err
			}
		}
	}
}

func (f *fakeIngest) ListUpstreamIds(req *mailbusv1.ListUpstreamIdsRequest, stream mailbusv1.IngestService_ListUpstreamIdsServer) error {
	// Reuses one response, as a handler may over the network.
	resp := &mailbusv1.ListUpstreamIdsResponse{}
	for _, m := range f.responses {
		resp.Messages = []*mailbusv1.UpstreamMessage{m}
		if err := stream.Send(resp); err != nil {
			return err
		}
		m.MessageId = "changed after send"
	}
	return nil
}

// authInterceptors refuse calls without the token "mbt_good", as the
// store's do from the incoming metadata.
func authInterceptors(seen chan<- string) ([]grpc.UnaryServerInterceptor, []grpc.StreamServerInterceptor) {
	check := func(ctx context.Context, method string) error {
		md, _ := metadata.FromIncomingContext(ctx)
		seen <- method
		if v := md.Get(apitoken.MetadataKey); len(v) != 1 || v[0] != "Bearer mbt_good" {
			return status.Error(codes.Unauthenticated, "bad token")
		}
		return nil
	}
	return []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := check(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}}, []grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := check(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return h(srv, ss)
		}}
}

func newFake() *fakeIngest {
	return &fakeIngest{got: make(chan *mailbusv1.IngestMessagesRequest, 16), ended: make(chan error, 4),
		reqs: make(chan *mailbusv1.ClaimAccountRequest, 16), peers: make(chan *peer.Peer, 16)}
}

func serve(t *testing.T, f *fakeIngest, shared ...string) (*Channel, chan string) {
	t.Helper()
	ch := New()
	mailbusv1.RegisterIngestServiceServer(ch, f)
	seen := make(chan string, 64)
	u, s := authInterceptors(seen)
	stop := ch.Serve(ServeOptions{Unary: u, Stream: s, Shared: shared})
	t.Cleanup(stop)
	return ch, seen
}

func TestUnary(t *testing.T) {
	f := newFake()
	ch, seen := serve(t, f)
	good := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))
	bad := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_bad")))
	ctx := context.Background()

	req := &mailbusv1.ClaimAccountRequest{AccountId: "a1", LeaseToken: 7}
	var hdr metadata.MD
	if _, err := good.ClaimAccount(ctx, req, grpc.Header(&hdr)); err != nil {
		t.Fatalf("ClaimAccount: %v", err)
	}
	if m := <-seen; m != mailbusv1.IngestService_ClaimAccount_FullMethodName {
		t.Errorf("interceptor saw %q", m)
	}
	if got := <-f.reqs; got == req || got.AccountId != "a1" || got.LeaseToken != 7 {
		t.Errorf("handler got %v (same pointer: %v); want a copy of the request", got, got == req)
	}
	if p := <-f.peers; p == nil || p.Addr.Network() != "inproc" || p.AuthInfo != nil {
		t.Errorf("peer %+v; want the inproc address without AuthInfo", p)
	}
	if hdr.Get("h")[0] != "1" {
		t.Errorf("header %v; want h=1", hdr)
	}

	for _, tc := range []struct {
		name   string
		client mailbusv1.IngestServiceClient
		req    *mailbusv1.ClaimAccountRequest
		code   codes.Code
	}{
		{"wrong token", bad, &mailbusv1.ClaimAccountRequest{AccountId: "a1"}, codes.Unauthenticated},
		{"no token", mailbusv1.NewIngestServiceClient(ch.Conn(nil)), &mailbusv1.ClaimAccountRequest{AccountId: "a1"}, codes.Unauthenticated},
		{"status of the handler", good, &mailbusv1.ClaimAccountRequest{AccountId: "refuse"}, codes.FailedPrecondition},
		{"plain error", good, &mailbusv1.ClaimAccountRequest{AccountId: "plain"}, codes.Unknown},
	} {
		_, err := tc.client.ClaimAccount(ctx, tc.req)
		if status.Code(err) != tc.code {
			t.Errorf("%s: %v; want %v", tc.name, err, tc.code)
		}
	}
	if _, err := good.UpsertMailboxes(ctx, &mailbusv1.UpsertMailboxesRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("unimplemented method: %v", err)
	}
}

func TestUnaryDeadlineReachesHandler(t *testing.T) {
	f := newFake()
	ch, _ := serve(t, f)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.ClaimAccount(ctx, &mailbusv1.ClaimAccountRequest{AccountId: "wait"})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("ClaimAccount past its deadline: %v; want DEADLINE_EXCEEDED", err)
	}
}

func TestClientStreamShared(t *testing.T) {
	f := newFake()
	ch, _ := serve(t, f, mailbusv1.IngestService_IngestMessages_FullMethodName)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))
	stream, err := c.IngestMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !SharesMessages(stream.Context()) {
		t.Error("SharesMessages is false on a shared method's stream")
	}
	body := []byte("body")
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{Meta: &mailbusv1.IngestMeta{Ref: "r1"}, Data: body, EndOfMessage: true}); err != nil {
		t.Fatal(err)
	}
	got := <-f.got
	if &got.Data[0] != &body[0] {
		t.Error("the handler got a copy of the body; want the sender's bytes")
	}
	resp, err := stream.Recv()
	if err != nil || len(resp.Results) != 1 || resp.Results[0].Ref != "r1" {
		t.Fatalf("Recv: %v, %v", resp, err)
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != io.EOF {
		t.Fatalf("Recv after the handler returned: %v; want io.EOF", err)
	}
}

func TestClientStreamNotSharedCopies(t *testing.T) {
	f := newFake()
	ch, _ := serve(t, f)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))
	stream, err := c.IngestMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if SharesMessages(stream.Context()) {
		t.Error("SharesMessages is true on a method not shared")
	}
	body := []byte("body")
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{Meta: &mailbusv1.IngestMeta{Ref: "r1"}, Data: body}); err != nil {
		t.Fatal(err)
	}
	copy(body, "XXXX") // reused after Send, as over the network
	if got := <-f.got; string(got.Data) != "body" {
		t.Errorf("handler got %q; want the body as it was sent", got.Data)
	}
	stream.CloseSend()
}

func TestServerStreamReusedResponse(t *testing.T) {
	f := newFake()
	f.responses = []*mailbusv1.UpstreamMessage{{MessageId: "a"}, {MessageId: "b"}}
	ch, _ := serve(t, f)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))
	stream, err := c.ListUpstreamIds(context.Background(), &mailbusv1.ListUpstreamIdsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	var got []*mailbusv1.ListUpstreamIdsResponse
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, resp)
	}
	for _, r := range got {
		refs = append(refs, r.Messages[0].MessageId)
	}
	if len(refs) != 2 || refs[0] != "a" || refs[1] != "b" {
		t.Errorf("received %v; want [a b] as sent, whatever the handler did afterwards", refs)
	}
}

func TestStreamErrorAndCancel(t *testing.T) {
	f := newFake()
	ch, _ := serve(t, f, mailbusv1.IngestService_IngestMessages_FullMethodName)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))

	// The handler's status reaches Recv; Send after it is io.EOF.
	stream, err := c.IngestMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{Meta: &mailbusv1.IngestMeta{Ref: "fail"}}); err != nil {
		t.Fatal(err)
	}
	<-f.got
	if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("Recv: %v; want the handler's FAILED_PRECONDITION", err)
	}
	<-f.ended
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{}); err != io.EOF {
		t.Errorf("Send after the handler returned: %v; want io.EOF", err)
	}

	// The client's cancel reaches the handler.
	ctx, cancel := context.WithCancel(context.Background())
	stream, err = c.IngestMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{Meta: &mailbusv1.IngestMeta{Ref: "x"}}); err != nil {
		t.Fatal(err)
	}
	<-f.got
	cancel()
	if err := <-f.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context after the client's cancel: %v; want canceled", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Errorf("Recv after cancel: %v; want CANCELED", err)
	}

	// A wrong token is refused on a stream too.
	bad := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_bad")))
	stream, err = bad.IngestMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("stream with a wrong token: %v; want UNAUTHENTICATED", err)
	}
}

func TestStopCancelsAndRefuses(t *testing.T) {
	f := newFake()
	ch := New()
	mailbusv1.RegisterIngestServiceServer(ch, f)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(nil))
	if _, err := c.ClaimAccount(context.Background(), &mailbusv1.ClaimAccountRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("before Serve: %v; want UNAVAILABLE", err)
	}
	stop := ch.Serve(ServeOptions{})
	stream, err := c.IngestMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{Meta: &mailbusv1.IngestMeta{Ref: "x"}}); err != nil {
		t.Fatal(err)
	}
	<-f.got
	stop() // returns once the handler did
	if err := <-f.ended; !errors.Is(err, context.Canceled) {
		t.Errorf("handler's context after stop: %v; want canceled", err)
	}
	if _, err := c.ClaimAccount(context.Background(), &mailbusv1.ClaimAccountRequest{}); status.Code(err) != codes.Unavailable {
		t.Errorf("after stop: %v; want UNAVAILABLE", err)
	}
}

// blockingInterceptor holds every stream call until its context ends,
// then refuses it with that context's status, as the store's auth
// interceptor refuses a call it cannot check in time; entered tells
// that a call reached it.
func blockingInterceptor(entered chan<- struct{}) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		entered <- struct{}{}
		<-ss.Context().Done()
		return status.FromContextError(ss.Context().Err()).Err()
	}
}

// A server-streaming call that ends before its handler took the request
// (an interceptor's refusal, the client's cancel) opens through the
// generated client and tells its status on the first Recv, as over
// grpc-go, whose SendMsg returns nil on such a method; it must not fail
// with a bare io.EOF, which loses the code.
func TestServerStreamRefusalOnRecv(t *testing.T) {
	f := newFake()
	ch, _ := serve(t, f)
	bad := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_bad")))

	blocking := New()
	mailbusv1.RegisterIngestServiceServer(blocking, newFake())
	entered := make(chan struct{}, 1)
	t.Cleanup(blocking.Serve(ServeOptions{Stream: []grpc.StreamServerInterceptor{blockingInterceptor(entered)}}))
	held := mailbusv1.NewIngestServiceClient(blocking.Conn(nil))

	for _, tc := range []struct {
		name   string
		client mailbusv1.IngestServiceClient
		cancel bool // cancel the call once it reached the interceptor
		code   codes.Code
	}{
		{"refused by an interceptor", bad, false, codes.Unauthenticated},
		{"cancelled while the request waits", held, true, codes.Canceled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tc.cancel {
				go func() {
					<-entered
					cancel()
				}()
			}
			stream, err := tc.client.ListUpstreamIds(ctx, &mailbusv1.ListUpstreamIdsRequest{})
			if err != nil {
				t.Fatalf("ListUpstreamIds: %v (code %v); want a stream whose Recv tells %v", err, status.Code(err), tc.code)
			}
			if _, err := stream.Recv(); status.Code(err) != tc.code {
				t.Errorf("Recv: %v; want %v", err, tc.code)
			}
		})
	}

	// A bidirectional stream's Send still returns io.EOF once the call
	// is over (pkg/ingest relies on it), and Recv tells the status.
	stream, err := bad.IngestMessages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{}); err != io.EOF {
		t.Errorf("Send on a refused bidirectional stream: %v; want io.EOF", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Recv on a refused bidirectional stream: %v; want UNAUTHENTICATED", err)
	}
}

// endingIngest's IngestMessages waits for its context to end, reports
// its error, sets a trailer (so that the client can tell the call is
// over) and returns what ret makes of its context.
type endingIngest struct {
	mailbusv1.UnimplementedIngestServiceServer
	handlerErr chan error
	ret        func(ctx context.Context) error
}

func (f *endingIngest) IngestMessages(stream mailbusv1.IngestService_IngestMessagesServer) error {
	<-stream.Context().Done()
	f.handlerErr <- stream.Context().Err()
	stream.SetTrailer(metadata.Pairs("ended", "1"))
	return f.ret(stream.Context())
}

func (f *endingIngest) ClaimAccount(ctx context.Context, _ *mailbusv1.ClaimAccountRequest) (*mailbusv1.ClaimAccountResponse, error) {
	<-ctx.Done()
	f.handlerErr <- ctx.Err()
	return nil, f.ret(ctx)
}

// handlerAnswers are what a handler returns once its context ended.
var handlerAnswers = []struct {
	name string
	ret  func(ctx context.Context) error
}{
	{"its context's status", func(ctx context.Context) error { return status.FromContextError(ctx.Err()).Err() }},
	{"its context's error", func(ctx context.Context) error { return ctx.Err() }},
	{"a status of its own", func(context.Context) error { return status.Error(codes.Internal, "db: interrupted") }},
}

// waitOver returns once the handler of stream returned (its trailer is
// there).
func waitOver(stream grpc.ClientStream) {
	for stream.Trailer() == nil {
		runtime.Gosched()
	}
}

// A call that reaches its own deadline ends with DEADLINE_EXCEEDED: its
// handler's context says so (the request metrics count the code the
// handler returns), and the client's Recv does, whatever the handler
// answered, also when it reads after the handler returned. The handler's
// deadline and the client's are two timers at the same instant; the
// channel once let the client's cancel the handler's context, which
// then said Canceled in about half the calls, so this runs many.
func TestDeadlineIsDeadlineExceeded(t *testing.T) {
	const calls = 100
	for _, answer := range handlerAnswers {
		t.Run(answer.name, func(t *testing.T) {
			f := &endingIngest{handlerErr: make(chan error, 1), ret: answer.ret}
			metrics := make(chan codes.Code, 1)
			ch := New()
			mailbusv1.RegisterIngestServiceServer(ch, f)
			t.Cleanup(ch.Serve(ServeOptions{
				Unary: []grpc.UnaryServerInterceptor{func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					resp, err := h(ctx, req)
					metrics <- status.Code(toStatusError(err))
					return resp, err
				}},
				Stream: []grpc.StreamServerInterceptor{func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
					err := h(srv, ss)
					metrics <- status.Code(toStatusError(err))
					return err
				}},
			}))
			c := mailbusv1.NewIngestServiceClient(ch.Conn(nil))
			check := func(what string, handlerErr error, handlerCode, clientCode codes.Code) {
				t.Helper()
				if !errors.Is(handlerErr, context.DeadlineExceeded) {
					t.Fatalf("%s: the handler's context ended with %v; want %v", what, handlerErr, context.DeadlineExceeded)
				}
				// The handler's own status is what the metrics count;
				// one that answers from its context counts the deadline.
				if answer.name != "a status of its own" && handlerCode != codes.DeadlineExceeded {
					t.Fatalf("%s: the handler answered %v; want DEADLINE_EXCEEDED", what, handlerCode)
				}
				if clientCode != codes.DeadlineExceeded {
					t.Fatalf("%s: the client got %v; want DEADLINE_EXCEEDED", what, clientCode)
				}
			}
			// A call whose deadline passed before it began never reaches
			// its handler (the machine may be slow): it is tried again.
			began := map[string]int{}
			for attempt := 0; began["stream"] < calls || began["unary"] < calls; attempt++ {
				if attempt == 20*calls {
					t.Fatalf("only %v of %d calls each began before their deadline", began, calls)
				}
				if began["stream"] < calls {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
					stream, err := c.IngestMessages(ctx)
					if err == nil {
						herr := <-f.handlerErr
						waitOver(stream)
						_, err = stream.Recv()
						check("stream", herr, <-metrics, status.Code(err))
						began["stream"]++
					} else if status.Code(err) != codes.DeadlineExceeded {
						t.Fatalf("IngestMessages: %v", err)
					}
					cancel()
				}
				if began["unary"] < calls {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Millisecond)
					_, err := c.ClaimAccount(ctx, &mailbusv1.ClaimAccountRequest{})
					// A unary handler runs on the caller's goroutine: it
					// reported before ClaimAccount returned, if it ran.
					select {
					case herr := <-f.handlerErr:
						check("unary", herr, <-metrics, status.Code(err))
						began["unary"]++
					default:
						if status.Code(err) != codes.DeadlineExceeded {
							t.Fatalf("ClaimAccount: %v", err)
						}
					}
					cancel()
				}
			}
		})
	}
}

// After the client cancels a stream, Recv returns CANCELLED whatever the
// handler answered, as over grpc-go, where the cancel resets the stream;
// also when the client reads after the handler returned.
func TestCancelIsCanceled(t *testing.T) {
	for _, answer := range handlerAnswers {
		t.Run(answer.name, func(t *testing.T) {
			f := &endingIngest{handlerErr: make(chan error, 1), ret: answer.ret}
			ch := New()
			mailbusv1.RegisterIngestServiceServer(ch, f)
			t.Cleanup(ch.Serve(ServeOptions{}))
			c := mailbusv1.NewIngestServiceClient(ch.Conn(nil))
			ctx, cancel := context.WithCancel(context.Background())
			stream, err := c.IngestMessages(ctx)
			if err != nil {
				t.Fatal(err)
			}
			cancel()
			if err := <-f.handlerErr; !errors.Is(err, context.Canceled) {
				t.Errorf("the handler's context ended with %v; want %v", err, context.Canceled)
			}
			waitOver(stream)
			if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
				t.Errorf("Recv after the client's cancel: %v; want CANCELLED", err)
			}
		})
	}
}

// A finished call keeps its status even if its client's context ends
// before the client reads it.
func TestFinishedCallKeepsStatus(t *testing.T) {
	f := newFake()
	ch, _ := serve(t, f)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := c.IngestMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&mailbusv1.IngestMessagesRequest{Meta: &mailbusv1.IngestMeta{Ref: "fail"}}); err != nil {
		t.Fatal(err)
	}
	<-f.got
	<-f.ended
	waitOver(stream)
	cancel()
	if _, err := stream.Recv(); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Recv of a call that ended before the cancel: %v; want its FAILED_PRECONDITION", err)
	}
}

// SharesMessages belongs to the stream, not to the contexts derived from
// its context: a stream opened with one is told its own mode.
func TestSharesMessagesNotInherited(t *testing.T) {
	f := newFake()
	ch, _ := serve(t, f, mailbusv1.IngestService_IngestMessages_FullMethodName)
	c := mailbusv1.NewIngestServiceClient(ch.Conn(apitoken.Credentials("mbt_good")))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shared, err := c.IngestMessages(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !SharesMessages(shared.Context()) {
		t.Fatal("SharesMessages is false on a shared method's stream")
	}
	other, err := c.ListUpstreamIds(shared.Context(), &mailbusv1.ListUpstreamIdsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if SharesMessages(other.Context()) {
		t.Error("a stream that clones reports SharesMessages because its context derives from a shared stream's")
	}
}
