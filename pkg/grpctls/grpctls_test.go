package grpctls_test

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/grpctls"
	"github.com/mailbus/mailbus/pkg/grpctls/grpctlstest"
	"github.com/mailbus/mailbus/pkg/serving"
)

// serve runs a serving.Server with the given transport security on
// 127.0.0.1 and returns its address.
func serve(t *testing.T, srv grpctls.Server) string {
	t.Helper()
	cfg, err := srv.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := serving.New(serving.Config{Name: "test", Listener: lis, TLS: cfg})
	if err != nil {
		t.Fatal(err)
	}
	s.Health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.Addr().String()
}

// check calls the health service over a connection with the client's
// transport security.
func check(t *testing.T, addr string, c grpctls.Client) error {
	t.Helper()
	opt, err := c.DialOption()
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestTLS(t *testing.T) {
	good, other := grpctlstest.NewCA(t, "mailbus"), grpctlstest.NewCA(t, "other")
	serverCert, serverKey := good.Issue("store", "store.test")
	clientCert, clientKey := good.Issue("imapsync")
	strangerCert, strangerKey := other.Issue("stranger")

	tlsAddr := serve(t, grpctls.Server{CertFile: serverCert, KeyFile: serverKey})
	mtlsAddr := serve(t, grpctls.Server{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: good.File})
	plainAddr := serve(t, grpctls.Server{})

	tests := []struct {
		name   string
		addr   string
		client grpctls.Client
		ok     bool
	}{
		{"TLS, the server's CA", tlsAddr, grpctls.Client{CAFile: good.File}, true},
		{"TLS, by a name in the certificate", tlsAddr, grpctls.Client{CAFile: good.File, ServerName: "store.test"}, true},
		{"TLS, a name not in the certificate", tlsAddr, grpctls.Client{CAFile: good.File, ServerName: "evil.test"}, false},
		{"TLS, a wrong CA", tlsAddr, grpctls.Client{CAFile: other.File}, false},
		{"TLS, the system roots (no test CA there)", tlsAddr, grpctls.Client{CAFile: grpctls.SystemRoots}, false},
		{"TLS server, plaintext client", tlsAddr, grpctls.Client{}, false},
		{"plaintext server, TLS client", plainAddr, grpctls.Client{CAFile: good.File}, false},
		{"plaintext both", plainAddr, grpctls.Client{}, true},
		{"mTLS, client certificate of the CA", mtlsAddr, grpctls.Client{CAFile: good.File, CertFile: clientCert, KeyFile: clientKey}, true},
		{"mTLS, no client certificate", mtlsAddr, grpctls.Client{CAFile: good.File}, false},
		{"mTLS, client certificate of another CA", mtlsAddr, grpctls.Client{CAFile: good.File, CertFile: strangerCert, KeyFile: strangerKey}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(t, tt.addr, tt.client)
			if tt.ok && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !tt.ok {
				if err == nil {
					t.Fatal("accepted")
				}
				if status.Code(err) != codes.Unavailable {
					t.Fatalf("code %v, want Unavailable (a failed handshake): %v", status.Code(err), err)
				}
			}
		})
	}
}

func TestPinned(t *testing.T) {
	good := grpctlstest.NewCA(t, "mailbus")
	serverCert, serverKey := good.Issue("store", "store.test")
	otherCert, otherKey := good.Issue("other")
	addr := serve(t, grpctls.Server{CertFile: serverCert, KeyFile: serverKey, ClientCAFile: good.File})
	for _, tt := range []struct {
		name      string
		cert, key string
		ok        bool
	}{
		{"own certificate", serverCert, serverKey, true},
		{"another certificate of the same CA", otherCert, otherKey, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(tt.cert, tt.key)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := grpctls.Pinned(pair)
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient(addr, grpctls.Credentials(cfg))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func TestPlaintextOnlyOnLoopback(t *testing.T) {
	tests := []struct {
		addr     string
		tlsOn    bool
		insecure bool
		exposed  bool
		refused  bool
	}{
		{"127.0.0.1:7400", false, false, false, false},
		{"[::1]:7400", false, false, false, false},
		{"localhost:7400", false, false, false, false},
		{"0.0.0.0:7400", false, false, false, true},
		{":7400", false, false, false, true},
		{"[::]:7400", false, false, false, true},
		{"10.0.0.5:7400", false, false, false, true},
		{"store.example:7400", false, false, false, true},
		{"0.0.0.0:7400", true, false, false, false},
		{"0.0.0.0:7400", false, true, true, false},
	}
	for _, tt := range tests {
		exposed, err := grpctls.CheckListen(tt.addr, tt.tlsOn, tt.insecure)
		if refused := errors.Is(err, grpctls.ErrPlaintextNotLoopback); refused != tt.refused || exposed != tt.exposed {
			t.Errorf("CheckListen(%q, tls %v, insecure %v) = %v, %v; want exposed %v, refused %v", tt.addr, tt.tlsOn, tt.insecure, exposed, err, tt.exposed, tt.refused)
		}
	}
}

// A server configured on a non-loopback address without TLS does not
// start; with TLS or --insecure it does.
func TestServingRefusesPlaintextOffLoopback(t *testing.T) {
	good := grpctlstest.NewCA(t, "mailbus")
	certFile, keyFile := good.Issue("store")
	tlsCfg, err := grpctls.Server{CertFile: certFile, KeyFile: keyFile}.TLSConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		tls      *tls.Config
		insecure bool
		ok       bool
	}{
		{"plaintext", nil, false, false},
		{"plaintext with --insecure", nil, true, true},
		{"TLS", tlsCfg, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := serving.New(serving.Config{Name: "test", Listen: "0.0.0.0:0", TLS: tt.tls, Insecure: tt.insecure})
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				cancel()
				s.Run(ctx)
				return
			}
			if !errors.Is(err, grpctls.ErrPlaintextNotLoopback) {
				t.Fatalf("err = %v, want ErrPlaintextNotLoopback", err)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	good := grpctlstest.NewCA(t, "mailbus")
	certFile, keyFile := good.Issue("store")
	for _, tt := range []struct {
		name string
		load func() error
	}{
		{"server cert without key", func() error { _, err := grpctls.Server{CertFile: certFile}.TLSConfig(); return err }},
		{"client CA without server cert", func() error { _, err := grpctls.Server{ClientCAFile: good.File}.TLSConfig(); return err }},
		{"missing server cert file", func() error {
			_, err := grpctls.Server{CertFile: certFile + ".missing", KeyFile: keyFile}.TLSConfig()
			return err
		}},
		{"CA file without PEM", func() error { _, err := grpctls.Client{CAFile: keyFile + ".missing"}.TLSConfig(); return err }},
		{"CA file that is a key", func() error { _, err := grpctls.Client{CAFile: keyFile}.TLSConfig(); return err }},
		{"client cert without key", func() error {
			_, err := grpctls.Client{CAFile: good.File, CertFile: certFile}.TLSConfig()
			return err
		}},
	} {
		if err := tt.load(); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}
