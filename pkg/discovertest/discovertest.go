// Package discovertest runs on loopback what package discover looks up,
// for tests in every module: a DNS server (github.com/miekg/dns) that
// answers from records the test adds, and an HTTPS server that serves
// autoconfig files under any host name, with a certificate made on the
// fly for the name asked (signed by a CA of the test's own). Config
// returns a discover.Config whose resolver asks that DNS server and
// whose HTTP client reaches that HTTPS server for every host and trusts
// only that CA, so the real URLs (https://autoconfig.<domain>/...) are
// fetched unchanged.
//
//	env := discovertest.Start(t)
//	env.AddRecord(t, "_imaps._tcp.example.test. 60 IN SRV 10 0 993 mail.example.test.")
//	env.ServeFile("autoconfig.example.test", "/mail/config-v1.1.xml", xmlText)
//	d := discover.New(env.Config())
package discovertest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/mailbus/mailbus/pkg/discover"
)

// Env is a running DNS server and HTTPS server.
type Env struct {
	// DNSAddr is the DNS server's UDP and TCP address.
	DNSAddr string
	// HTTPSAddr is the HTTPS server's address.
	HTTPSAddr string

	ca     *x509.Certificate
	caKey  *ecdsa.PrivateKey
	caPool *x509.CertPool

	mu      sync.Mutex
	records map[string][]dns.RR     // by lower-case FQDN
	files   map[string]http.Handler // by host + path
	certs   map[string]*tls.Certificate

	dnsQueries   atomic.Int64
	httpRequests atomic.Int64
}

// Start runs both servers until the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	e := &Env{records: map[string][]dns.RR{}, files: map[string]http.Handler{}, certs: map[string]*tls.Certificate{}}
	e.makeCA(t)
	e.startDNS(t)
	e.startHTTPS(t)
	return e
}

// AddRecord adds a resource record in zone-file syntax, such as
// "_imaps._tcp.example.test. 60 IN SRV 10 0 993 mail.example.test.".
func (e *Env) AddRecord(t testing.TB, rr string) {
	t.Helper()
	r, err := dns.NewRR(rr)
	if err != nil {
		t.Fatalf("discovertest: record %q: %v", rr, err)
	}
	name := strings.ToLower(r.Header().Name)
	e.mu.Lock()
	e.records[name] = append(e.records[name], r)
	e.mu.Unlock()
}

// Serve answers requests for host and path (the query is ignored) with h.
func (e *Env) Serve(host, path string, h http.Handler) {
	e.mu.Lock()
	e.files[strings.ToLower(host)+path] = h
	e.mu.Unlock()
}

// ServeFile answers requests for host and path with body as XML.
func (e *Env) ServeFile(host, path, body string) {
	e.Serve(host, path, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		_, _ = w.Write([]byte(body))
	}))
}

// DNSQueries is how many DNS queries the server has answered.
func (e *Env) DNSQueries() int64 { return e.dnsQueries.Load() }

// HTTPRequests is how many HTTP requests the server has answered.
func (e *Env) HTTPRequests() int64 { return e.httpRequests.Load() }

// Resolver asks the DNS server.
func (e *Env) Resolver() *net.Resolver { return discover.ResolverAt(e.DNSAddr) }

// HTTPClient reaches the HTTPS server whatever the URL's host and port,
// and trusts only the test CA.
func (e *Env) HTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, e.HTTPSAddr)
		},
		TLSClientConfig: &tls.Config{RootCAs: e.caPool, MinVersion: tls.VersionTLS12},
	}}
}

// Config is a discover.Config that looks up only these servers.
func (e *Env) Config() discover.Config {
	return discover.Config{HTTPClient: e.HTTPClient(), Resolver: e.Resolver()}
}

func (e *Env) makeCA(t testing.TB) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "discovertest CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if e.ca, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	e.caKey = key
	e.caPool = x509.NewCertPool()
	e.caPool.AddCert(e.ca)
}

// certFor makes (once) a leaf certificate for the name a client asks.
func (e *Env) certFor(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(hello.ServerName)
	if name == "" {
		return nil, errors.New("discovertest: no server name")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if c, ok := e.certs[name]; ok {
		return c, nil
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(int64(len(e.certs) + 2)), Subject: pkix.Name{CommonName: name},
		DNSNames: []string{name}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, e.ca, &key.PublicKey, e.caKey)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	e.certs[name] = c
	return c, nil
}

func (e *Env) startHTTPS(t testing.TB) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.HTTPSAddr = ln.Addr().String()
	srv := &http.Server{
		Handler:           http.HandlerFunc(e.serveHTTP),
		ReadHeaderTimeout: time.Minute,
		TLSConfig:         &tls.Config{GetCertificate: e.certFor, MinVersion: tls.VersionTLS12},
		ErrorLog:          log.New(io.Discard, "", 0), // handshakes a test refuses
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
}

func (e *Env) serveHTTP(w http.ResponseWriter, r *http.Request) {
	e.httpRequests.Add(1)
	host := strings.ToLower(r.Host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	e.mu.Lock()
	h := e.files[host+r.URL.Path]
	e.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	h.ServeHTTP(w, r)
}

func (e *Env) startDNS(t testing.TB) {
	// UDP and TCP on the same port: the Go resolver retries a truncated
	// answer over TCP to the address it used.
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		e.DNSAddr = pc.LocalAddr().String()
		handler := dns.HandlerFunc(e.serveDNS)
		udp := &dns.Server{PacketConn: pc, Handler: handler}
		tcp := &dns.Server{Listener: ln, Handler: handler}
		go func() { _ = udp.ActivateAndServe() }()
		go func() { _ = tcp.ActivateAndServe() }()
		t.Cleanup(func() {
			_ = udp.Shutdown()
			_ = tcp.Shutdown()
		})
		return
	}
	t.Fatalf("discovertest: no port free for both UDP and TCP: %v", lastErr)
}

// serveDNS answers from the records: those of the name and type asked;
// NOERROR without answers for a name with records of other types (or
// with names below it); NXDOMAIN otherwise.
func (e *Env) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	e.dnsQueries.Add(1)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.ToLower(q.Name)
		e.mu.Lock()
		rrs, exists := e.records[name]
		for n := range e.records {
			if strings.HasSuffix(n, "."+name) {
				exists = true
			}
		}
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, dns.Copy(rr))
			}
		}
		e.mu.Unlock()
		if !exists {
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}
