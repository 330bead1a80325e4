package serving

import (
	"context"
	"io"
	"net/http"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestProbes: /readyz follows the server's health state, /healthz
// (liveness) answers ok whatever the state.
func TestProbes(t *testing.T) {
	s, err := New(Config{Name: "x", Listen: NoGRPC, MetricsListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	get := func(path string) int {
		t.Helper()
		resp, err := http.Get("http://" + s.MetricsAddr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		status          healthpb.HealthCheckResponse_ServingStatus
		healthz, readyz int
	}{
		{healthpb.HealthCheckResponse_NOT_SERVING, http.StatusOK, http.StatusServiceUnavailable},
		{healthpb.HealthCheckResponse_SERVING, http.StatusOK, http.StatusOK},
		{healthpb.HealthCheckResponse_NOT_SERVING, http.StatusOK, http.StatusServiceUnavailable},
	} {
		s.Health.SetServingStatus("", tc.status)
		if got := get("/healthz"); got != tc.healthz {
			t.Errorf("%v: /healthz %d, want %d", tc.status, got, tc.healthz)
		}
		if got := get("/readyz"); got != tc.readyz {
			t.Errorf("%v: /readyz %d, want %d", tc.status, got, tc.readyz)
		}
	}
}
