package serving_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/proto"

	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
	"github.com/mailbus/mailbus/pkg/serving"
)

// startWeb runs a server with Web on 127.0.0.1 until the test ends and
// returns its address. Its health service answers SERVING.
func startWeb(t *testing.T, tlsCfg *tls.Config) string {
	t.Helper()
	return startWebWith(t, tlsCfg, &serving.Web{Keepalive: time.Minute}).Addr().String()
}

// startWebWith is startWeb with the given Web, and returns the server.
func startWebWith(t *testing.T, tlsCfg *tls.Config, web *serving.Web) *serving.Server {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := serving.New(serving.Config{Name: "test", Listener: lis, TLS: tlsCfg, Web: web})
	if err != nil {
		t.Fatal(err)
	}
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return s
}

func ctxOf(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkGRPC calls Health.Check and reflection's ListServices over gRPC,
// as grpcurl does.
func checkGRPC(t *testing.T, addr string, creds credentials.TransportCredentials) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctxOf(t), &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("gRPC Health.Check = %v, %v", resp, err)
	}
	stream, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctxOf(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	got, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection over gRPC: %v", err)
	}
	if !strings.Contains(got.GetListServicesResponse().String(), "grpc.health.v1.Health") {
		t.Fatalf("reflection lists %v, want grpc.health.v1.Health", got.GetListServicesResponse())
	}
	stream.CloseSend()
}

// callHealth calls Health.Check over HTTP with client in the given
// content type (Connect JSON or binary, gRPC-Web) and checks the answer
// and the HTTP version it came over.
func callHealth(t *testing.T, client *http.Client, url, contentType string, wantProtoMajor int) {
	t.Helper()
	var body []byte
	switch contentType {
	case "application/json":
		body = []byte(`{}`)
	case "application/grpc-web+proto":
		body = make([]byte, 5) // an empty message, enveloped
	}
	req, err := http.NewRequestWithContext(ctxOf(t), http.MethodPost, url+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s: %v", contentType, err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != wantProtoMajor {
		t.Fatalf("%s: %s over %s: %q, want 200 over HTTP/%d", contentType, resp.Status, resp.Proto, got, wantProtoMajor)
	}
	var msg []byte
	switch contentType {
	case "application/json":
		if !strings.Contains(string(got), `"SERVING"`) {
			t.Fatalf("%s: %q, want SERVING", contentType, got)
		}
		return
	case "application/grpc-web+proto":
		if len(got) < 5 || got[0] != 0 {
			t.Fatalf("%s: %q, want a message frame", contentType, got)
		}
		msg = got[5 : 5+binary.BigEndian.Uint32(got[1:5])]
		if trailer := strings.ToLower(string(got[5+len(msg):])); !strings.Contains(trailer, "grpc-status: 0") {
			t.Fatalf("%s: trailer %q, want grpc-status:0", contentType, got[5+len(msg):])
		}
	default:
		msg = got
	}
	var hc healthpb.HealthCheckResponse
	if err := proto.Unmarshal(msg, &hc); err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("%s: %v %v, want SERVING", contentType, &hc, err)
	}
}

// TestWebPlaintext: on a plaintext loopback listener, gRPC (h2c) and
// reflection keep working, and Connect (JSON and binary) and gRPC-Web
// answer over HTTP/1.1 and over h2c.
func TestWebPlaintext(t *testing.T) {
	addr := startWeb(t, nil)
	checkGRPC(t, addr, insecure.NewCredentials())
	h1 := &http.Client{}
	h2c := &http.Client{Transport: &http.Transport{Protocols: new(http.Protocols)}}
	h2c.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	for _, ct := range []string{"application/json", "application/proto", "application/grpc-web+proto"} {
		callHealth(t, h1, "http://"+addr, ct, 1)
		callHealth(t, h2c, "http://"+addr, ct, 2)
	}
}

// TestWebTLS: with TLS from reloadable certificates, gRPC, Connect and
// gRPC-Web answer over HTTP/2 and HTTP/1.1 (chosen by ALPN), and a new
// connection gets the certificate a reload brought.
func TestWebTLS(t *testing.T) {
	ca := grpctlstest.NewCA(t, "web")
	cert1, key1 := ca.Issue("first", "localhost")
	cert2, key2 := ca.Issue("second", "localhost")
	dir := t.TempDir()
	files := grpctls.Server{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	copyFile(t, cert1, files.CertFile)
	copyFile(t, key1, files.KeyFile)
	certs, err := files.Load()
	if err != nil {
		t.Fatal(err)
	}
	addr := startWeb(t, certs.TLSConfig())
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(ca.File)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(pem)
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "localhost"}

	checkGRPC(t, addr, credentials.NewTLS(clientTLS))
	// (Each transport its own copy: an HTTP/2 one adds "h2" to it.)
	h2 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}
	h1 := &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{}}}
	for _, ct := range []string{"application/json", "application/proto", "application/grpc-web+proto"} {
		callHealth(t, h2, "https://"+addr, ct, 2)
		callHealth(t, h1, "https://"+addr, ct, 1)
	}

	served := func() string {
		conn, err := tls.Dial("tcp", addr, clientTLS)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.CommonName
	}
	if got := served(); got != "first" {
		t.Fatalf("certificate %q, want first", got)
	}
	copyFile(t, cert2, files.CertFile)
	copyFile(t, key2, files.KeyFile)
	if changed, err := certs.Reload(); err != nil || !changed {
		t.Fatalf("Reload = %v, %v", changed, err)
	}
	if got := served(); got != "second" {
		t.Fatalf("certificate after reload %q, want second", got)
	}
	callHealth(t, &http.Client{Transport: &http.Transport{TLSClientConfig: clientTLS.Clone(), ForceAttemptHTTP2: true}}, "https://"+addr, "application/json", 2)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestWebIdleTimeout: an HTTP/1.1 keep-alive connection left idle after a
// call is closed after Web.IdleTimeout, while a server stream (Health.Watch
// over Connect, like a WatchChanges watch) open on another HTTP/1.1
// connection and silent for longer stays open and still delivers.
func TestWebIdleTimeout(t *testing.T) {
	s := startWebWith(t, nil, &serving.Web{IdleTimeout: 200 * time.Millisecond})
	addr := s.Addr().String()

	// The stream, over HTTP/1.1: it answers SERVING at once, then only
	// on a change.
	body := append([]byte{0, 0, 0, 0, 2}, "{}"...)
	req, err := http.NewRequestWithContext(ctxOf(t), http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Watch", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/connect+json")
	resp, err := (&http.Client{Transport: &http.Transport{}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 1 {
		t.Fatalf("Watch: %s over %s, want 200 over HTTP/1.1", resp.Status, resp.Proto)
	}
	nextStatus := func() string {
		t.Helper()
		var prefix [5]byte
		if _, err := io.ReadFull(resp.Body, prefix[:]); err != nil {
			t.Fatalf("Watch stream: %v", err)
		}
		msg := make([]byte, binary.BigEndian.Uint32(prefix[1:]))
		if _, err := io.ReadFull(resp.Body, msg); err != nil {
			t.Fatalf("Watch stream: %v", err)
		}
		return string(msg)
	}
	if got := nextStatus(); !strings.Contains(got, `"SERVING"`) {
		t.Fatalf("Watch: first message %s, want SERVING", got)
	}

	// An idle keep-alive connection: one call, then nothing. The server
	// closes it; the read deadline only ends the test if it does not.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: "+addr+
		"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"); err != nil {
		t.Fatal(err)
	}
	if err := conn.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	check, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, check.Body); err != nil || check.StatusCode != http.StatusOK || check.Close {
		t.Fatalf("Check: %s (close %v) %v, want 200 on a kept-alive connection", check.Status, check.Close, err)
	}
	if n, err := r.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle keep-alive connection: read %d bytes, %v; want it closed by the server (EOF)", n, err)
	}

	// The stream has been silent for longer than the idle timeout (since
	// before the call above), and is still open.
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	if got := nextStatus(); !strings.Contains(got, `"NOT_SERVING"`) {
		t.Fatalf("Watch after the idle timeout: %s, want NOT_SERVING", got)
	}
}
