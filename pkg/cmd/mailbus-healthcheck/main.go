// Command mailbus-healthcheck probes a mailbus service from inside its
// container, where the distroless image has no shell, curl or
// grpc_health_probe: it is the Docker (compose) HEALTHCHECK of every
// mailbus image. It exits 0 when every probe given passes and 1 otherwise.
//
//	mailbus-healthcheck --http http://127.0.0.1:7401/healthz --grpc 127.0.0.1:7400
//
// --http expects a 2xx answer; --grpc asks the standard gRPC health
// service (grpc.health.v1) for --grpc-service ("" = the whole server) and
// expects SERVING. Kubernetes probes the same endpoints natively.
//
// A service that serves TLS has its certificate in MAILBUS_TLS_CERT and
// MAILBUS_TLS_KEY (or --tls-cert, --tls-key); both probes then speak
// TLS (the --http one https, whatever the URL says, since the metrics
// endpoint follows the gRPC one), accept exactly that certificate and
// present it as client certificate, so the same command works with TLS,
// mutual TLS or none.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/mailbus/mailbus/pkg/envflag"
	"github.com/mailbus/mailbus/pkg/grpctls"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := pflag.NewFlagSet("mailbus-healthcheck", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	httpURL := fs.String("http", "", "URL of an HTTP endpoint that must answer 2xx, such as http://127.0.0.1:7401/healthz")
	grpcAddr := fs.String("grpc", "", "gRPC address whose health service must answer SERVING, such as 127.0.0.1:7400")
	grpcService := fs.String("grpc-service", "", "service name to ask the health service about; empty means the server")
	timeout := fs.Duration("timeout", 3*time.Second, "deadline of each probe")
	certFile := envflag.String(fs, "tls-cert", "MAILBUS_TLS_CERT", "", "the probed service's TLS certificate: the gRPC probe uses TLS pinned to it")
	keyFile := envflag.String(fs, "tls-key", "MAILBUS_TLS_KEY", "", "private key of --tls-cert")
	if err := fs.Parse(envflag.NormalizeArgs("mailbus-healthcheck", fs, args, stderr)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "mailbus-healthcheck:", err)
		return 2
	}
	if *httpURL == "" && *grpcAddr == "" {
		fmt.Fprintln(stderr, "mailbus-healthcheck: give --http URL and/or --grpc ADDRESS")
		return 2
	}
	var pinned *tls.Config
	if *certFile != "" || *keyFile != "" {
		pair, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(stderr, "mailbus-healthcheck: --tls-cert:", err)
			return 2
		}
		if pinned, err = grpctls.Pinned(pair); err != nil {
			fmt.Fprintln(stderr, "mailbus-healthcheck:", err)
			return 2
		}
	}
	if *httpURL != "" {
		if err := probeHTTP(*httpURL, *timeout, pinned); err != nil {
			fmt.Fprintln(stderr, "mailbus-healthcheck:", err)
			return 1
		}
	}
	if *grpcAddr != "" {
		if err := probeGRPC(*grpcAddr, *grpcService, *timeout, grpctls.Credentials(pinned)); err != nil {
			fmt.Fprintln(stderr, "mailbus-healthcheck:", err)
			return 1
		}
	}
	return 0
}

// probeHTTP gets url; with pinned (the service has a certificate, so its
// metrics endpoint speaks TLS) it speaks https to it, pinned to that
// certificate, even when url says http.
func probeHTTP(url string, timeout time.Duration, pinned *tls.Config) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := http.DefaultClient
	if pinned != nil {
		if rest, ok := strings.CutPrefix(url, "http://"); ok {
			url = "https://" + rest
		}
		client = &http.Client{Transport: &http.Transport{TLSClientConfig: pinned}}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("http: %s answered %s", url, resp.Status)
	}
	return nil
}

func probeGRPC(addr, service string, timeout time.Duration, transport grpc.DialOption) error {
	conn, err := grpc.NewClient(addr, transport)
	if err != nil {
		return fmt.Errorf("grpc: %w", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return fmt.Errorf("grpc: health check of %s: %w", addr, err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc: %s is %s", addr, resp.Status)
	}
	return nil
}
