package store_test

import (
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// tcpProxy forwards connections from a loopback port to target until Cut,
// which closes the port and every connection through it; Restore opens the
// same port again.
type tcpProxy struct {
	t      testing.TB
	addr   string
	target string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]bool
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	p := &tcpProxy{t: t, addr: "127.0.0.1:0", target: target, conns: map[net.Conn]bool{}}
	p.Restore()
	t.Cleanup(p.Cut)
	return p
}

// Restore listens on the proxy's port (a new one the first time).
func (p *tcpProxy) Restore() {
	p.t.Helper()
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen %s: %v", p.addr, err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go p.accept(ln)
}

func (p *tcpProxy) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.ln != ln { // cut meanwhile
			p.mu.Unlock()
			c.Close()
			up.Close()
			return
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close(); c.Close() }()
		go func() { io.Copy(c, up); c.Close(); up.Close() }()
	}
}

// Cut closes the port and every connection through it.
func (p *tcpProxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

// TestReadiness: the store's gRPC health (the server and each service) and
// /readyz say NOT_SERVING while NATS is down and while PostgreSQL is
// unreachable (a proxy in front of it, cut), and SERVING again once each
// is back; /healthz, the liveness check, answers ok throughout.
func TestReadiness(t *testing.T) {
	pg := dbtest.Backends()[1]
	dbCfg := pg.Config(t)
	u, err := url.Parse(dbCfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newTCPProxy(t, u.Host)
	u.Host = proxy.addr
	dbCfg.URL = u.String()

	natsPort, natsDir := freePort(t), t.TempDir()
	ns := runNATS(t, natsPort, natsDir)
	metricsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	e := startStore(t, pg, storeOpts{natsURL: ns.ClientURL(), dbConfig: &dbCfg, metricsListen: metricsAddr, readinessInterval: 50 * time.Millisecond})

	httpClient := &http.Client{Timeout: rpcLong}
	httpStatus := func(path string) int {
		resp, err := httpClient.Get("http://" + metricsAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	services := []string{"", mailbusv1.SyncService_ServiceDesc.ServiceName, mailbusv1.IngestService_ServiceDesc.ServiceName}
	waitStatus := func(what string, want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		wantReady := http.StatusOK
		if want != healthpb.HealthCheckResponse_SERVING {
			wantReady = http.StatusServiceUnavailable
		}
		waitFor(t, waitLong, what, func() bool {
			for _, svc := range services {
				resp, err := e.health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: svc})
				if err != nil || resp.Status != want {
					return false
				}
			}
			return httpStatus("/readyz") == wantReady
		})
		if got := httpStatus("/healthz"); got != http.StatusOK {
			t.Errorf("%s: /healthz %d, want 200 (liveness)", what, got)
		}
	}

	waitStatus("SERVING at the start", healthpb.HealthCheckResponse_SERVING)

	ns.Shutdown()
	ns.WaitForShutdown()
	waitStatus("NOT_SERVING with NATS down", healthpb.HealthCheckResponse_NOT_SERVING)
	ns = runNATS(t, natsPort, natsDir)
	waitStatus("SERVING with NATS back", healthpb.HealthCheckResponse_SERVING)

	proxy.Cut()
	waitStatus("NOT_SERVING with PostgreSQL unreachable", healthpb.HealthCheckResponse_NOT_SERVING)
	proxy.Restore()
	waitStatus("SERVING with PostgreSQL back", healthpb.HealthCheckResponse_SERVING)

	// The store works again: a change reaches the stream.
	e.createAccount(t, pop3Account("after-the-outages"))
	e.waitPublished(t)
}
