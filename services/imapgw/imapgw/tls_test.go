package imapgw

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// selfSigned makes a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "imapgw test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestTLS: implicit TLS and STARTTLS with the certificate, and
// AUTHENTICATE PLAIN (with an initial response, SASL-IR) on both.
func TestTLS(t *testing.T) {
	e := startEnv(t)
	acct, _ := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	cert, pool := selfSigned(t)
	tlsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gw := e.gateway(func(c *Config) {
		c.TLS = ServerTLS(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}, ClientAuth: tls.RequireAnyClientCert})
		c.TLSListener = tlsLis
	})
	clientTLS := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	implicit, err := imapclient.DialTLS(tlsLis.Addr().String(), &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer implicit.Close()
	if err := implicit.Authenticate(sasl.NewPlainClient("", "work", tok)); err != nil {
		t.Fatalf("AUTHENTICATE PLAIN over implicit TLS: %v", err)
	}
	if _, err := implicit.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	plain := gw.client(t, nil)
	if !plain.Caps().Has(imap.CapStartTLS) {
		t.Errorf("no STARTTLS in %v", plain.Caps())
	}
	starttls, err := imapclient.DialStartTLS(gw.addr, &imapclient.Options{TLSConfig: clientTLS})
	if err != nil {
		t.Fatal(err)
	}
	defer starttls.Close()
	if err := starttls.Login("work", tok).Wait(); err != nil {
		t.Fatalf("LOGIN after STARTTLS: %v", err)
	}
	if caps, err := starttls.Capability().Wait(); err != nil || !caps.Has(imap.CapIdle) || !caps.Has(imap.CapMove) || !caps.Has(imap.CapUIDPlus) || !caps.Has(imap.Cap("APPENDLIMIT=67108864")) {
		t.Errorf("capabilities after login: %v %v", caps, err)
	}
}

// TestIsLoopback: which remote addresses may log in without TLS (Login
// refuses the others with PRIVACYREQUIRED; a test machine has no second
// host to connect from).
func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		ok   bool
	}{{"127.0.0.1:5000", true}, {"[::1]:5000", true}, {"192.0.2.1:5000", false}, {"[2001:db8::1]:5000", false}} {
		a, err := net.ResolveTCPAddr("tcp", tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		if isLoopback(a) != tc.ok {
			t.Errorf("isLoopback(%s) = %v", tc.addr, !tc.ok)
		}
	}
}

// nonLoopbackIP returns an address of this machine that is not loopback,
// or nil.
func nonLoopbackIP() net.IP {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	for _, a := range addrs {
		if ip, ok := a.(*net.IPNet); ok && !ip.IP.IsLoopback() && ip.IP.To4() != nil && !ip.IP.IsLinkLocalUnicast() {
			return ip.IP
		}
	}
	return nil
}

// TestPlaintextLoginFromAnotherHost: on a non-loopback address (with
// Insecure), a plaintext connection from an address other than loopback
// announces LOGINDISABLED and no AUTH=PLAIN (RFC 3501 section 6.2.3), a
// login over it is NO [PRIVACYREQUIRED]; after STARTTLS it announces
// AUTH=PLAIN and the login works. A plaintext connection from loopback
// announces AUTH=PLAIN.
func TestPlaintextLoginFromAnotherHost(t *testing.T) {
	ip := nonLoopbackIP()
	if ip == nil {
		t.Skip("no non-loopback IPv4 address on this machine")
	}
	e := startEnv(t)
	acct, _ := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	cert, pool := selfSigned(t)
	lis, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	e.gateway(func(c *Config) {
		c.Listener, c.Insecure = lis, true
		c.TLS = ServerTLS(&tls.Config{Certificates: []tls.Certificate{cert}})
	})
	c, err := imapclient.DialInsecure(lis.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if caps := c.Caps(); !caps.Has(imap.CapLoginDisabled) || caps.Has(imap.Cap("AUTH=PLAIN")) {
		t.Errorf("capabilities of a plaintext connection from %s: %v, want LOGINDISABLED and no AUTH=PLAIN", ip, caps)
	}
	if err := c.Login("work", tok).Wait(); imapCode(err) != imap.ResponseCodePrivacyRequired {
		t.Errorf("plaintext LOGIN from %s: %v, want NO [PRIVACYREQUIRED]", ip, err)
	}
	if err := c.Authenticate(sasl.NewPlainClient("", "work", tok)); imapCode(err) != imap.ResponseCodePrivacyRequired {
		t.Errorf("plaintext AUTHENTICATE PLAIN from %s: %v, want NO [PRIVACYREQUIRED]", ip, err)
	}
	tlsClient, err := imapclient.DialStartTLS(lis.Addr().String(), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: pool, InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer tlsClient.Close()
	if caps := tlsClient.Caps(); caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.Cap("AUTH=PLAIN")) {
		t.Errorf("capabilities after STARTTLS from %s: %v, want AUTH=PLAIN and no LOGINDISABLED", ip, caps)
	}
	if err := tlsClient.Login("work", tok).Wait(); err != nil {
		t.Errorf("LOGIN after STARTTLS from %s: %v", ip, err)
	}

	// From loopback, plaintext authentication is allowed and announced.
	loop := e.gateway(nil).client(t, nil)
	if caps := loop.Caps(); caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.Cap("AUTH=PLAIN")) {
		t.Errorf("capabilities of a plaintext connection from loopback: %v, want AUTH=PLAIN and no LOGINDISABLED", caps)
	}
	if err := loop.Login("work", tok).Wait(); err != nil {
		t.Errorf("plaintext LOGIN from loopback: %v", err)
	}
}
