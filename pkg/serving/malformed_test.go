package serving_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/serving"
)

// rawCodec sends and receives the bytes of a *[]byte as they are, so that a
// test can send a request that is not valid protobuf.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: %T", v)
	}
	*b = append([]byte(nil), data...)
	return nil
}

func (rawCodec) Name() string { return "proto" }

// startHealth serves the gRPC health service, with RejectMalformed's codec
// if codec is set and registered through its Registrar if reject is set,
// and returns a client connection to it.
func startHealth(t *testing.T, codec, reject bool) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := serving.NewRejectMalformed()
	var opts []grpc.ServerOption
	if codec {
		opts = append(opts, r.ServerOption())
	}
	srv := grpc.NewServer(opts...)
	var reg grpc.ServiceRegistrar = srv
	if reject {
		reg = r.Registrar(srv)
	}
	healthpb.RegisterHealthServer(reg, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// TestMalformedRequest: a request that is not valid protobuf gets
// INVALID_ARGUMENT through RejectMalformed, on a unary method and on a
// stream, and grpc-go's own INTERNAL without it, or for a service
// registered on the server without its Registrar (the codec alone keeps no
// failure). A valid request still works.
func TestMalformedRequest(t *testing.T) {
	// Field 1 (service, a string) says 5 bytes follow; one does.
	malformed := []byte{0x0a, 0x05, 'a'}
	valid := []byte{}
	for _, c := range []struct {
		name          string
		codec, reject bool
		want          codes.Code
	}{
		{"grpc-go alone", false, false, codes.Internal},
		{"codec without registrar", true, false, codes.Internal},
		{"RejectMalformed", true, true, codes.InvalidArgument},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn := startHealth(t, c.codec, c.reject)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out []byte
			err := conn.Invoke(ctx, "/grpc.health.v1.Health/Check", &malformed, &out, grpc.ForceCodec(rawCodec{}))
			checkMalformed(t, "unary", err, c.want)

			stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, "/grpc.health.v1.Health/Watch", grpc.ForceCodec(rawCodec{}))
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.SendMsg(&malformed); err != nil {
				t.Fatal(err)
			}
			if err := stream.CloseSend(); err != nil {
				t.Fatal(err)
			}
			checkMalformed(t, "stream", stream.RecvMsg(&out), c.want)

			if err := conn.Invoke(ctx, "/grpc.health.v1.Health/Check", &valid, &out, grpc.ForceCodec(rawCodec{})); err != nil {
				t.Errorf("valid request: %v", err)
			}
		})
	}
}

func checkMalformed(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != want {
		t.Errorf("%s: %v, want %v", what, err, want)
	}
	if want == codes.InvalidArgument && !strings.Contains(st.Message(), "malformed request") {
		t.Errorf("%s: message %q does not say the request is malformed", what, st.Message())
	}
}
