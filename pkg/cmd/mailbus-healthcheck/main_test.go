package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
)

func TestProbes(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer ok.Close()
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }))
	defer bad.Close()

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	go srv.Serve(lis)
	defer srv.Stop()
	hs.SetServingStatus("mailbus.v1.IngestService", healthpb.HealthCheckResponse_NOT_SERVING)

	for _, tt := range []struct {
		args []string
		want int
	}{
		{nil, 2},
		{[]string{"--http", ok.URL}, 0},
		{[]string{"--http", bad.URL}, 1},
		{[]string{"--http", "http://127.0.0.1:1/healthz"}, 1},
		{[]string{"--grpc", lis.Addr().String()}, 0},
		{[]string{"--grpc", lis.Addr().String(), "--grpc-service", "mailbus.v1.IngestService"}, 1},
		{[]string{"--http", ok.URL, "--grpc", lis.Addr().String()}, 0},
		{[]string{"--http", bad.URL, "--grpc", lis.Addr().String()}, 1},
	} {
		if got := run(tt.args, io.Discard); got != tt.want {
			t.Errorf("run(%q) = %d, want %d", tt.args, got, tt.want)
		}
	}
}

// With the service's certificate the gRPC probe speaks TLS to a server
// that requires client certificates; without it, it fails.
func TestProbeTLS(t *testing.T) {
	ca := grpctlstest.NewCA(t, "mailbus")
	certFile, keyFile := ca.Issue("store")
	otherCert, otherKey := ca.Issue("other")
	cfg, err := grpctls.Server{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ca.File}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	defer srv.Stop()
	addr := lis.Addr().String()
	metrics := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") }))
	metrics.TLS = grpctls.WithoutClientAuth(cfg)
	metrics.StartTLS()
	defer metrics.Close()
	for _, tt := range []struct {
		args []string
		want int
	}{
		{[]string{"--grpc", addr, "--tls-cert", certFile, "--tls-key", keyFile}, 0},
		{[]string{"--grpc", addr}, 1},
		{[]string{"--grpc", addr, "--tls-cert", otherCert, "--tls-key", otherKey}, 1},
		{[]string{"--grpc", addr, "--tls-cert", certFile}, 2},
		// The metrics endpoint of a TLS service speaks TLS: http:// in
		// the command is probed as https, pinned to the certificate.
		{[]string{"--http", metrics.URL, "--tls-cert", certFile, "--tls-key", keyFile}, 0},
		{[]string{"--http", strings.Replace(metrics.URL, "https://", "http://", 1), "--tls-cert", certFile, "--tls-key", keyFile}, 0},
		{[]string{"--http", metrics.URL, "--tls-cert", otherCert, "--tls-key", otherKey}, 1},
		{[]string{"--http", metrics.URL}, 1},
	} {
		if got := run(tt.args, io.Discard); got != tt.want {
			t.Errorf("run(%q) = %d, want %d", tt.args, got, tt.want)
		}
	}
}
