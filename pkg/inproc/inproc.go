// Package inproc is a gRPC channel inside one process: a
// grpc.ClientConnInterface whose calls run the registered service
// handlers directly, behind the same server interceptors as the network
// server, with no TCP, no HTTP/2 and no protobuf encoding (decision 0045).
//
// A Channel is a grpc.ServiceRegistrar: the server registers its services
// on it as on its grpc.Server, then calls Serve with its interceptors.
// Clients take a connection with Conn, carrying their per-call
// credentials (a service token), which reach the server's interceptors
// as incoming metadata exactly as over the network.
//
// # Messages
//
// A message is cloned (proto.Merge into the receiver's message) by
// default: a handler may keep or change a request, or reuse a response
// after sending it (GetAttachment reuses its read buffer), and a client
// may do the same, which over the network is safe because gRPC encodes
// a message before Send returns. Methods named in ServeOptions.Shared
// pass their messages by reference instead: the receiver gets a shallow
// copy of the sender's message (its top-level fields; bodies and
// sub-messages are shared), so each side must leave a message, and what
// it refers to, alone once sent. A stream of a shared method tells its
// client so: SharesMessages(stream.Context()) is true, and pkg/ingest
// then hands over chunk buffers it never reuses.
//
// # What the network server does that this does not
//
// A stream message is handed over once the other side takes it: there
// are no flow-control windows to give slack, so a client of a
// bidirectional stream must read its answers while it sends (pkg/ingest
// does, in a goroutine of its own), as a handler that answers while it
// reads must (the store's ingest handler does).
//
// There is no message size limit (the callers are in the same process;
// the handlers check their own limits, as the store's ingest does per
// message), no keepalive (nothing can vanish), and no InTapHandle (the
// interceptors check everything the tap checks). The peer is
// Addr ("inproc"), without AuthInfo, as on the store's native gRPC
// transport since TLS is ended before it (decision 0033).
package inproc

import (
	"context"
	"errors"
	"io"
	"reflect"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Addr is the peer address of every call on a Channel.
type Addr struct{}

// Network implements net.Addr.
func (Addr) Network() string { return "inproc" }

// String implements net.Addr.
func (Addr) String() string { return "in-process" }

// ErrNotServing is the error of a call before Serve or after its stop
// (an UNAVAILABLE status).
var ErrNotServing = status.Error(codes.Unavailable, "inproc: the server is not serving")

// ServeOptions are the server side of a Channel.
type ServeOptions struct {
	// Unary and Stream are the server interceptors, outermost first, as
	// grpc.ChainUnaryInterceptor and grpc.ChainStreamInterceptor take
	// them.
	Unary  []grpc.UnaryServerInterceptor
	Stream []grpc.StreamServerInterceptor
	// Shared are the full method names ("/pkg.Service/Method") whose
	// messages pass by reference, not cloned (see the package doc).
	Shared []string
}

// Channel is an in-process gRPC channel. The zero value is not usable:
// use New.
type Channel struct {
	mu       sync.Mutex
	methods  map[string]*method
	serving  bool
	unary    grpc.UnaryServerInterceptor
	stream   grpc.StreamServerInterceptor
	shared   map[string]bool
	stopCtx  context.Context // cancelled when Serve's stop is called
	stopCall context.CancelFunc
	calls    sync.WaitGroup
}

type method struct {
	impl   any
	unary  *grpc.MethodDesc
	stream *grpc.StreamDesc
}

// New returns a channel that serves nothing until Serve.
func New() *Channel {
	return &Channel{methods: map[string]*method{}}
}

// RegisterService implements grpc.ServiceRegistrar. A service registered
// again (a server that runs again on the same channel) replaces the
// earlier registration.
func (c *Channel) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if impl != nil && desc.HandlerType != nil {
		if ht, st := reflect.TypeOf(desc.HandlerType).Elem(), reflect.TypeOf(impl); !st.Implements(ht) {
			panic("inproc: " + st.String() + " does not implement " + ht.String())
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range desc.Methods {
		md := &desc.Methods[i]
		c.methods["/"+desc.ServiceName+"/"+md.MethodName] = &method{impl: impl, unary: md}
	}
	for i := range desc.Streams {
		sd := &desc.Streams[i]
		c.methods["/"+desc.ServiceName+"/"+sd.StreamName] = &method{impl: impl, stream: sd}
	}
}

// Serve starts answering calls with the services registered so far. The
// returned stop refuses new calls with UNAVAILABLE, cancels the running
// ones and waits for their handlers to return.
func (c *Channel) Serve(opts ServeOptions) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.unary = chainUnary(opts.Unary)
	c.stream = chainStream(opts.Stream)
	c.shared = map[string]bool{}
	for _, m := range opts.Shared {
		c.shared[m] = true
	}
	c.stopCtx, c.stopCall, c.serving = ctx, cancel, true
	c.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			c.serving = false
			c.mu.Unlock()
			cancel()
			c.calls.Wait()
		})
	}
}

// Conn returns a connection on the channel whose calls carry creds (nil:
// none), as grpc.WithPerRPCCredentials does on a network connection.
func (c *Channel) Conn(creds credentials.PerRPCCredentials) *Conn {
	return &Conn{ch: c, creds: creds}
}

// Conn is a client connection on a Channel; it implements
// grpc.ClientConnInterface. It needs no closing.
type Conn struct {
	ch    *Channel
	creds credentials.PerRPCCredentials
}

var _ grpc.ClientConnInterface = (*Conn)(nil)

// call is what a call needs on the server side.
type call struct {
	m       *method
	unary   grpc.UnaryServerInterceptor
	stream  grpc.StreamServerInterceptor
	shared  bool
	ctx     context.Context // the handler's
	cancel  context.CancelFunc
	client  context.Context // the client's
	release func() bool     // stops the cancellation by the client's context
	ts      *transportStream
	done    func()
}

// begin looks the method up and makes the handler's context: the
// client's deadline and cancellation, the server's stop, the client's
// outgoing metadata and credentials as incoming metadata, and the peer.
// None of the client's context values reach the handler, as over the
// network.
func (cc *Conn) begin(ctx context.Context, fullMethod string, opts []grpc.CallOption) (*call, error) {
	c := cc.ch
	c.mu.Lock()
	m, known := c.methods[fullMethod]
	serving := c.serving
	var k call
	if serving {
		k = call{m: m, unary: c.unary, stream: c.stream, shared: c.shared[fullMethod]}
		c.calls.Add(1)
		k.ctx, k.cancel = context.WithCancel(c.stopCtx)
	}
	c.mu.Unlock()
	if !serving {
		return nil, ErrNotServing
	}
	fail := func(err error) (*call, error) {
		k.cancel()
		c.calls.Done()
		return nil, err
	}
	if !known {
		return fail(status.Errorf(codes.Unimplemented, "unknown method %s", fullMethod))
	}
	if err := ctx.Err(); err != nil {
		return fail(status.FromContextError(err).Err())
	}
	md, err := cc.incoming(ctx, fullMethod, opts)
	if err != nil {
		return fail(err)
	}
	dl, hasDL := ctx.Deadline()
	if hasDL {
		var cancelDL context.CancelFunc
		k.ctx, cancelDL = context.WithDeadline(k.ctx, dl)
		cancelOuter := k.cancel
		k.cancel = func() { cancelDL(); cancelOuter() }
	}
	k.client = ctx
	k.release = context.AfterFunc(ctx, func() {
		// The client's deadline is the handler's too: its own timer
		// ends it with DeadlineExceeded, as grpc-go's server does.
		// Cancelling it here would race that timer and end it with
		// Canceled instead.
		if hasDL && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return
		}
		k.cancel()
	})
	k.ts = &transportStream{method: fullMethod}
	k.ctx = metadata.NewIncomingContext(k.ctx, md)
	k.ctx = peer.NewContext(k.ctx, &peer.Peer{Addr: Addr{}, LocalAddr: Addr{}})
	k.ctx = grpc.NewContextWithServerTransportStream(k.ctx, k.ts)
	k.done = func() {
		k.release()
		k.cancel()
		c.calls.Done()
	}
	return &k, nil
}

// status is the call's status for the client once the handler returned
// herr, before the call is done: as over the network, a call whose
// client's context ended before the handler returned ends with that
// context's status (the client's cancel resets the stream, its
// deadline ends it) whatever the handler answered, and a call whose
// deadline passed ends with DEADLINE_EXCEEDED even if the handler saw it
// first. Otherwise it is the handler's status.
func (k *call) status(herr error) error {
	if err := k.client.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	if errors.Is(k.ctx.Err(), context.DeadlineExceeded) {
		return status.FromContextError(context.DeadlineExceeded).Err()
	}
	if herr != nil {
		return toStatusError(herr)
	}
	return nil
}

// incoming is the metadata the server sees: the client's outgoing
// metadata and its per-call credentials' (the connection's, then any
// given as a call option).
func (cc *Conn) incoming(ctx context.Context, fullMethod string, opts []grpc.CallOption) (metadata.MD, error) {
	out, _ := metadata.FromOutgoingContext(ctx)
	md := out.Copy()
	if md == nil {
		md = metadata.MD{}
	}
	all := []credentials.PerRPCCredentials{cc.creds}
	for _, o := range opts {
		if pc, ok := o.(grpc.PerRPCCredsCallOption); ok {
			all = append(all, pc.Creds)
		}
	}
	svc, _, _ := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	for _, creds := range all {
		if creds == nil {
			continue
		}
		kv, err := creds.GetRequestMetadata(ctx, "inproc:///"+svc)
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return nil, err
			}
			return nil, status.Errorf(codes.Unauthenticated, "inproc: per-call credentials: %v", err)
		}
		for k, v := range kv {
			k = strings.ToLower(k)
			md[k] = append(md[k], v)
		}
	}
	return md, nil
}

// Invoke implements grpc.ClientConnInterface.
func (cc *Conn) Invoke(ctx context.Context, fullMethod string, args, reply any, opts ...grpc.CallOption) error {
	k, err := cc.begin(ctx, fullMethod, opts)
	if err != nil {
		return err
	}
	defer k.done()
	if k.m.unary == nil {
		return status.Errorf(codes.Unimplemented, "inproc: %s is a streaming method", fullMethod)
	}
	dec := func(in any) error { return pass(in, args, k.shared) }
	resp, herr := k.m.unary.Handler(k.m.impl, k.ctx, dec, k.unary)
	setCallMetadata(opts, k.ts.header(), k.ts.trailer())
	if err := k.status(herr); err != nil {
		return err
	}
	return pass(reply, resp, k.shared)
}

// NewStream implements grpc.ClientConnInterface.
func (cc *Conn) NewStream(ctx context.Context, desc *grpc.StreamDesc, fullMethod string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	k, err := cc.begin(ctx, fullMethod, opts)
	if err != nil {
		return nil, err
	}
	if k.m.stream == nil {
		k.done()
		return nil, status.Errorf(codes.Unimplemented, "inproc: %s is a unary method", fullMethod)
	}
	if desc == nil {
		desc = k.m.stream
	}
	cs := &clientStream{
		// Always set, so that a stream opened with a context derived
		// from a shared stream's does not inherit its flag.
		ctx:  context.WithValue(ctx, sharedKey{}, k.shared),
		desc: desc, opts: opts, shared: k.shared, ts: k.ts,
		toServer:  make(chan any),
		toClient:  make(chan any),
		sendClose: make(chan struct{}),
		done:      make(chan struct{}),
	}
	ss := &serverStream{ctx: k.ctx, cs: cs}
	k.ts.headerSent = make(chan struct{})
	info := &grpc.StreamServerInfo{FullMethod: fullMethod, IsClientStream: k.m.stream.ClientStreams, IsServerStream: k.m.stream.ServerStreams}
	go func() {
		var herr error
		if k.stream != nil {
			herr = k.stream(k.m.impl, ss, info, k.m.stream.Handler)
		} else {
			herr = k.m.stream.Handler(k.m.impl, ss)
		}
		cs.err = k.status(herr)
		k.ts.sendHeader()
		k.done()
		close(cs.done)
	}()
	return cs, nil
}

// sharedKey marks the context of a client stream whose messages pass by
// reference.
type sharedKey struct{}

// SharesMessages reports whether ctx is the context of a client stream on
// a Channel whose messages pass by reference: a message sent on it, and
// every buffer it refers to, must not be changed or reused afterwards.
func SharesMessages(ctx context.Context) bool {
	v, _ := ctx.Value(sharedKey{}).(bool)
	return v
}

// clientStream is the client's end of a stream.
type clientStream struct {
	ctx       context.Context
	desc      *grpc.StreamDesc
	opts      []grpc.CallOption
	shared    bool
	ts        *transportStream
	toServer  chan any
	toClient  chan any
	sendClose chan struct{}
	closeOnce sync.Once
	done      chan struct{} // the handler returned; err is set
	err       error
}

func (cs *clientStream) Context() context.Context { return cs.ctx }

func (cs *clientStream) Header() (metadata.MD, error) {
	select {
	case <-cs.ts.headerSent:
		return cs.ts.header(), nil
	case <-cs.ctx.Done():
		return nil, status.FromContextError(cs.ctx.Err()).Err()
	}
}

func (cs *clientStream) Trailer() metadata.MD {
	select {
	case <-cs.done:
		return cs.ts.trailer()
	default:
		return nil
	}
}

// CloseSend implements grpc.ClientStream: the handler's next RecvMsg
// returns io.EOF. Like gRPC's, it must not be called concurrently with
// SendMsg; every message sent before it was taken by the handler, since
// a send waits for the handler to take it.
func (cs *clientStream) CloseSend() error {
	cs.closeOnce.Do(func() { close(cs.sendClose) })
	return nil
}

// SendMsg hands m to the handler and returns once the handler took it.
// As with gRPC, it returns io.EOF once the call is over (the handler
// returned, or the client's context ended): RecvMsg tells the status.
// On a method whose client does not stream it returns nil then, as
// grpc-go does because the generated client of a server-streaming
// method fails the call on any error of its one SendMsg: the call
// returns its stream, and the first RecvMsg tells the status (an
// interceptor's refusal, say).
func (cs *clientStream) SendMsg(m any) error {
	msg := m
	if !cs.shared {
		msg = clone(m)
	}
	select {
	case cs.toServer <- msg:
		return nil
	case <-cs.done:
	case <-cs.ctx.Done():
	}
	if !cs.desc.ClientStreams {
		return nil
	}
	return io.EOF
}

func (cs *clientStream) RecvMsg(m any) error {
	// A call that is over tells its own status, even if the client's
	// context ended since.
	select {
	case <-cs.done:
		return cs.end()
	default:
	}
	select {
	case v := <-cs.toClient:
		// v is the handler's message when shared, else a clone of it
		// that only this side holds.
		return pass(m, v, true)
	case <-cs.done:
		return cs.end()
	case <-cs.ctx.Done():
		return status.FromContextError(cs.ctx.Err()).Err()
	}
}

// end is RecvMsg's answer once the handler returned: its status, or
// io.EOF. The handler's sends each waited for a receiver, so no message
// is left.
func (cs *clientStream) end() error {
	setCallMetadata(cs.opts, cs.ts.header(), cs.ts.trailer())
	if cs.err != nil {
		return cs.err
	}
	return io.EOF
}

// serverStream is the handler's end of a stream.
type serverStream struct {
	ctx context.Context
	cs  *clientStream
}

func (ss *serverStream) Context() context.Context { return ss.ctx }

func (ss *serverStream) SetHeader(md metadata.MD) error { return ss.cs.ts.SetHeader(md) }

func (ss *serverStream) SendHeader(md metadata.MD) error { return ss.cs.ts.SendHeader(md) }

func (ss *serverStream) SetTrailer(md metadata.MD) { _ = ss.cs.ts.SetTrailer(md) }

// SendMsg hands m to the client and returns once the client took it.
func (ss *serverStream) SendMsg(m any) error {
	ss.cs.ts.sendHeader()
	msg := m
	if !ss.cs.shared {
		msg = clone(m)
	}
	select {
	case ss.cs.toClient <- msg:
		return nil
	case <-ss.ctx.Done():
		return status.FromContextError(ss.ctx.Err()).Err()
	}
}

func (ss *serverStream) RecvMsg(m any) error {
	select {
	case v := <-ss.cs.toServer:
		// v is the client's message when shared, else a clone of it
		// that only this side holds.
		return pass(m, v, true)
	case <-ss.cs.sendClose:
		return io.EOF
	case <-ss.ctx.Done():
		return status.FromContextError(ss.ctx.Err()).Err()
	}
}

// transportStream keeps a call's header and trailer
// (grpc.SetHeader, grpc.SendHeader and grpc.SetTrailer in a handler).
type transportStream struct {
	method     string
	mu         sync.Mutex
	hdr, trl   metadata.MD
	headerSent chan struct{} // streams only: closed once the header is sent
	sentOnce   sync.Once
}

func (t *transportStream) Method() string { return t.method }

func (t *transportStream) SetHeader(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hdr = metadata.Join(t.hdr, md)
	return nil
}

func (t *transportStream) SendHeader(md metadata.MD) error {
	if err := t.SetHeader(md); err != nil {
		return err
	}
	t.sendHeader()
	return nil
}

func (t *transportStream) SetTrailer(md metadata.MD) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.trl = metadata.Join(t.trl, md)
	return nil
}

func (t *transportStream) sendHeader() {
	if t.headerSent != nil {
		t.sentOnce.Do(func() { close(t.headerSent) })
	}
}

func (t *transportStream) header() metadata.MD {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.hdr.Copy()
}

func (t *transportStream) trailer() metadata.MD {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.trl.Copy()
}

// setCallMetadata fills the grpc.Header and grpc.Trailer call options.
func setCallMetadata(opts []grpc.CallOption, hdr, trl metadata.MD) {
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			*o.HeaderAddr = hdr
		case grpc.TrailerCallOption:
			*o.TrailerAddr = trl
		}
	}
}

// toStatusError is the error the client sees for a handler's error, as
// grpc-go's server makes it: its status, a context error's code, or
// UNKNOWN.
func toStatusError(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		st = status.FromContextError(err)
	}
	return st.Err()
}

// pass puts the message src into dst, the receiver's message: a shallow
// copy (src's fields moved over, nothing under them copied) when shared,
// else a deep one.
func pass(dst, src any, shared bool) error {
	if dst == src {
		return nil
	}
	dv, sv := reflect.ValueOf(dst), reflect.ValueOf(src)
	if shared && dv.Kind() == reflect.Pointer && dv.Type() == sv.Type() && !dv.IsNil() && !sv.IsNil() {
		// The generated message structs hold only their fields and
		// protoimpl's state (the message type's info, a size cache,
		// unknown fields), all fine to share between two values of one
		// type.
		dv.Elem().Set(sv.Elem())
		return nil
	}
	dm, ok1 := dst.(proto.Message)
	sm, ok2 := src.(proto.Message)
	if !ok1 || !ok2 {
		return status.Errorf(codes.Internal, "inproc: cannot pass a %T as a %T", src, dst)
	}
	if dm.ProtoReflect().Descriptor() != sm.ProtoReflect().Descriptor() {
		return status.Errorf(codes.Internal, "inproc: cannot pass a %T as a %T", src, dst)
	}
	proto.Reset(dm)
	proto.Merge(dm, sm)
	return nil
}

// clone deep-copies a message sent on a stream that does not share, so
// that the sender may reuse it (and its buffers) once SendMsg returns, as
// over the network.
func clone(m any) any {
	if pm, ok := m.(proto.Message); ok {
		return proto.Clone(pm)
	}
	return m
}

func chainUnary(ints []grpc.UnaryServerInterceptor) grpc.UnaryServerInterceptor {
	switch len(ints) {
	case 0:
		return nil
	case 1:
		return ints[0]
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return ints[0](ctx, req, info, func(ctx context.Context, req any) (any, error) {
			return chainUnary(ints[1:])(ctx, req, info, h)
		})
	}
}

func chainStream(ints []grpc.StreamServerInterceptor) grpc.StreamServerInterceptor {
	switch len(ints) {
	case 0:
		return nil
	case 1:
		return ints[0]
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		return ints[0](srv, ss, info, func(srv any, ss grpc.ServerStream) error {
			return chainStream(ints[1:])(srv, ss, info, h)
		})
	}
}
