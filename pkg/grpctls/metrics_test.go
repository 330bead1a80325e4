package grpctls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
	"github.com/mailbus/mailbus/pkg/serving"
)

// TestMetricsFollowTheListenRule: --metrics-listen on a non-loopback
// address is refused in plaintext without --insecure, like --listen; with
// TLS (mutual included) /healthz is served over TLS with the gRPC
// certificate and asks no client certificate, and plain HTTP gets no
// answer.
func TestMetricsFollowTheListenRule(t *testing.T) {
	ca := grpctlstest.NewCA(t, "mailbus")
	certFile, keyFile := ca.Issue("store")
	static, err := grpctls.Server{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ca.File}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	reloadable, err := grpctls.Server{CertFile: certFile, KeyFile: keyFile, ClientCAFile: ca.File}.Load()
	if err != nil {
		t.Fatal(err)
	}
	clientCfg, err := grpctls.Client{CAFile: ca.File}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		metrics  string
		tls      *tls.Config
		insecure bool
		refused  bool
	}{
		{"plaintext on loopback", "127.0.0.1:0", nil, false, false},
		{"plaintext on every address", "0.0.0.0:0", nil, false, true},
		{"plaintext on the port alone", ":0", nil, false, true},
		{"plaintext with --insecure", "0.0.0.0:0", nil, true, false},
		{"mutual TLS", "0.0.0.0:0", static, false, false},
		{"mutual TLS, reloadable", "0.0.0.0:0", reloadable.TLSConfig(), false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer lis.Close()
			s, err := serving.New(serving.Config{Name: "test", Listener: lis, MetricsListen: tt.metrics, TLS: tt.tls, Insecure: tt.insecure})
			if tt.refused {
				if !errors.Is(err, grpctls.ErrPlaintextNotLoopback) || !strings.Contains(err.Error(), "--metrics-listen") {
					t.Fatalf("err = %v, want ErrPlaintextNotLoopback naming --metrics-listen", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			_, port, _ := net.SplitHostPort(s.MetricsAddr().String())
			httpsClient := &http.Client{Transport: &http.Transport{TLSClientConfig: clientCfg}}
			if tt.tls == nil {
				if body, err := get(http.DefaultClient, "http://127.0.0.1:"+port+"/healthz"); err != nil || body != "ok\n" {
					t.Fatalf("plain /healthz: %q, %v", body, err)
				}
				return
			}
			if body, err := get(httpsClient, "https://127.0.0.1:"+port+"/healthz"); err != nil || body != "ok\n" {
				t.Fatalf("/healthz over TLS without a client certificate: %q, %v", body, err)
			}
			if body, err := get(http.DefaultClient, "http://127.0.0.1:"+port+"/healthz"); err == nil {
				t.Fatalf("plain HTTP to the TLS metrics endpoint answered %q", body)
			}
		})
	}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), errors.New(resp.Status)
	}
	return string(b), err
}
