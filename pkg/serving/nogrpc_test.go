package serving

import (
	"context"
	"io"
	"net/http"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestNoGRPC: with Listen NoGRPC the Server opens no gRPC port, and still
// serves /healthz from its health state and stops with its context.
func TestNoGRPC(t *testing.T) {
	s, err := New(Config{Name: "x", Listen: NoGRPC, MetricsListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Fatalf("Addr() = %v, want nil", s.Addr())
	}
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	resp, err := http.Get("http://" + s.MetricsAddr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz: %d %s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
