package webhooks

import (
	"net"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestHealthFollowsNATS: gRPC health (and so /readyz) is NOT_SERVING
// while NATS is away and SERVING again when it is back.
func TestHealthFollowsNATS(t *testing.T) {
	n := startNATS(t)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startService(t, n, func(c *Config) { c.Listener = lis })
	health := healthpb.NewHealthClient(dial(t, lis.Addr().String(), ""))
	wait := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		deadline := time.Now().Add(waitFor)
		for {
			var got []healthpb.HealthCheckResponse_ServingStatus
			for _, svc := range []string{"", mailbusv1.WebhookService_ServiceDesc.ServiceName} {
				resp, err := health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: svc})
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, resp.Status)
			}
			if got[0] == want && got[1] == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("health %v, want %v", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait(healthpb.HealthCheckResponse_SERVING)
	n.shutdown()
	wait(healthpb.HealthCheckResponse_NOT_SERVING)
	n.start()
	wait(healthpb.HealthCheckResponse_SERVING)
}
