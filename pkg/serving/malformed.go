package serving

import (
	"context"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/status"
)

// RejectMalformed answers a request message that is not valid protobuf
// (or not of the method's type) with INVALID_ARGUMENT, "malformed request:
// ...", instead of grpc-go's INTERNAL: the client sent it wrong, and
// sending the same bytes again cannot succeed.
//
// grpc-go cannot be told so in one place: it decodes a unary request before
// any interceptor runs, and on a failure it writes the INTERNAL status to
// the client itself (serverStream.RecvMsg), before the handler's error is
// seen. So the decoding failure is taken before grpc-go sees it: the
// services registered through Registrar mark each request message they are
// about to decode; the codec (ServerOption) keeps the failure of a marked
// message instead of returning it, and the handler returns it as
// INVALID_ARGUMENT. A message nobody marked (the health and reflection
// services) fails the usual way. A mark lasts one decode call.
type RejectMalformed struct {
	// pending maps a request message being decoded to its *decodeResult.
	pending sync.Map
}

// decodeResult is the outcome of decoding one marked message.
type decodeResult struct{ err error }

// NewRejectMalformed returns a RejectMalformed; give its ServerOption to
// the server and register services through its Registrar.
func NewRejectMalformed() *RejectMalformed { return &RejectMalformed{} }

// ServerOption makes the server decode with the protobuf codec wrapped to
// keep the failures of marked messages.
func (r *RejectMalformed) ServerOption() grpc.ServerOption {
	return grpc.ForceServerCodecV2(malformedCodec{next: encoding.GetCodecV2(proto.Name), r: r})
}

// Registrar returns a registrar that registers services on next with their
// handlers wrapped to mark each request message they decode. The generated
// service descriptions are copied, never changed.
func (r *RejectMalformed) Registrar(next grpc.ServiceRegistrar) grpc.ServiceRegistrar {
	return malformedRegistrar{next: next, r: r}
}

// decode runs recv (grpc-go's decoding of m) with m marked, and returns
// INVALID_ARGUMENT if the codec could not decode it.
func (r *RejectMalformed) decode(m any, recv func(any) error) error {
	res := &decodeResult{}
	r.pending.Store(m, res)
	err := recv(m)
	r.pending.Delete(m)
	if err == nil && res.err != nil {
		return status.Error(codes.InvalidArgument, "malformed request: not a valid protobuf message of the method's type: "+res.err.Error())
	}
	return err
}

// malformedCodec is the protobuf codec, keeping the decoding failures of
// marked messages.
type malformedCodec struct {
	next encoding.CodecV2
	r    *RejectMalformed
}

func (c malformedCodec) Marshal(v any) (mem.BufferSlice, error) { return c.next.Marshal(v) }

func (c malformedCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.next.Unmarshal(data, v)
	if err != nil {
		if res, ok := c.r.pending.Load(v); ok {
			res.(*decodeResult).err = err
			return nil
		}
	}
	return err
}

func (c malformedCodec) Name() string { return c.next.Name() }

type malformedRegistrar struct {
	next grpc.ServiceRegistrar
	r    *RejectMalformed
}

func (m malformedRegistrar) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = make([]grpc.MethodDesc, len(desc.Methods))
	for i, md := range desc.Methods {
		h := md.Handler
		md.Handler = func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
			return h(srv, ctx, func(v any) error { return m.r.decode(v, dec) }, ic)
		}
		d.Methods[i] = md
	}
	d.Streams = make([]grpc.StreamDesc, len(desc.Streams))
	for i, sd := range desc.Streams {
		h := sd.Handler
		sd.Handler = func(srv any, ss grpc.ServerStream) error {
			return h(srv, malformedStream{ServerStream: ss, r: m.r})
		}
		d.Streams[i] = sd
	}
	m.next.RegisterService(&d, impl)
}

// malformedStream marks the request messages received on a stream.
type malformedStream struct {
	grpc.ServerStream
	r *RejectMalformed
}

// RecvMsg decodes a request message through decode. A server-streaming
// call whose request ends without its one message returns
// INVALID_ARGUMENT too, not grpc-go's INTERNAL "cardinality violation":
// the client sent it wrong. That is how a Connect or gRPC-Web stream with
// a malformed JSON request reaches the server: vanguard answers the client
// INVALID_ARGUMENT naming the field and ends the gRPC request without a
// message. grpc-go has by then written INTERNAL to the gRPC side itself
// (serverStream.RecvMsg; a gRPC client sending no message still gets
// it), so what this changes is the call's outcome in the metrics and
// logs: a client's error, not the store's.
func (s malformedStream) RecvMsg(m any) error {
	err := s.r.decode(m, s.ServerStream.RecvMsg)
	if st, ok := status.FromError(err); ok && st.Code() == codes.Internal && strings.HasPrefix(st.Message(), noRequestMessage) {
		return status.Error(codes.InvalidArgument, "malformed request: no request message")
	}
	return err
}

// noRequestMessage begins grpc-go's error for a server-streaming call
// without its request message (stream.go, serverStream.RecvMsg:
// "cardinality violation: received no request
// message from non-client-streaming RPC").
const noRequestMessage = "cardinality violation: received no request message"
