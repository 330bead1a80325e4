// Package grpctls builds the transport security of mailbus gRPC from
// certificate files, the same way in every binary: server TLS, optional
// mutual TLS (the server requires client certificates signed by a CA), the
// client side that verifies the store, and the rule that plaintext gRPC is
// for loopback only.
//
// The conventions (flags and environment variables, see AddServerFlags and
// AddClientFlags):
//
//	--tls-cert, --tls-key   this process's certificate and key (PEM): a
//	                        server presents it; a service that dials the
//	                        store presents it as its client certificate
//	--tls-client-ca         servers: require client certificates signed by
//	                        this CA (mutual TLS)
//	--tls-ca                clients: verify the server with this CA bundle
//	                        ("system": the system roots); setting it turns
//	                        TLS on for the connection
//	--tls-server-name       clients: the name the server's certificate must
//	                        carry, when it is not the dialed host
//	--insecure              servers: allow plaintext on a non-loopback
//	                        address (logged as a warning at every start)
//
// Only transport credentials are built here; per-RPC credentials (tokens)
// are added by the caller as further dial options and combine with these.
package grpctls

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/mailbus/mailbus/pkg/envflag"
)

// SystemRoots is the --tls-ca value that verifies servers with the
// system's root certificates.
const SystemRoots = "system"

// ErrPlaintextNotLoopback is returned by CheckListen for a plaintext
// listener on an address other than loopback without Insecure.
var ErrPlaintextNotLoopback = errors.New("refusing to serve plaintext on a non-loopback address: give --tls-cert and --tls-key, or start with --insecure on a private network")

// Server is the transport security of a gRPC server.
type Server struct {
	// CertFile and KeyFile are the server certificate (chain) and key in
	// PEM; both empty means plaintext.
	CertFile, KeyFile string
	// ClientCAFile, when set, makes clients present a certificate signed by
	// one of its CAs (mutual TLS).
	ClientCAFile string
	// Insecure allows plaintext on a non-loopback address.
	Insecure bool
}

// Enabled reports whether the server uses TLS.
func (s Server) Enabled() bool { return s.CertFile != "" || s.KeyFile != "" }

// TLSConfig loads the files and returns the server's TLS configuration, or
// nil (and no error) for plaintext.
func (s Server) TLSConfig() (*tls.Config, error) {
	if !s.Enabled() {
		if s.ClientCAFile != "" {
			return nil, errors.New("grpctls: --tls-client-ca needs --tls-cert and --tls-key")
		}
		return nil, nil
	}
	if s.CertFile == "" || s.KeyFile == "" {
		return nil, errors.New("grpctls: give both --tls-cert and --tls-key")
	}
	cert, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("grpctls: server certificate: %w", err)
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if s.ClientCAFile != "" {
		pool, err := loadPool(s.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("grpctls: --tls-client-ca: %w", err)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// CheckListen applies the loopback rule to the address a server listens
// on: plaintext (tlsOn false) on anything but a loopback address is refused
// unless insecure is set. It reports whether the listener is plaintext on a
// non-loopback address, which the caller logs as a warning.
func CheckListen(addr string, tlsOn, insecure bool) (exposed bool, err error) {
	if tlsOn || IsLoopback(addr) {
		return false, nil
	}
	if !insecure {
		return false, fmt.Errorf("%s: %w", addr, ErrPlaintextNotLoopback)
	}
	return true, nil
}

// IsLoopback reports whether a listen address ("host:port") is on loopback
// only: a loopback IP, or "localhost" when it resolves to loopback
// addresses alone (a hosts file or resolver that maps it to another
// address would otherwise expose a plaintext listener). An empty host,
// 0.0.0.0, ::, another IP or another name is not.
func IsLoopback(addr string) bool {
	return isLoopback(addr, net.LookupIP)
}

// isLoopback is IsLoopback with the resolver of "localhost" given.
func isLoopback(addr string, lookup func(host string) ([]net.IP, error)) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if strings.EqualFold(host, "localhost") {
		ips, err := lookup(host)
		if err != nil || len(ips) == 0 {
			return false
		}
		for _, ip := range ips {
			if !ip.IsLoopback() {
				return false
			}
		}
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// Client is the transport security of a connection to a gRPC server.
type Client struct {
	// CAFile verifies the server: a PEM bundle, or SystemRoots. Empty means
	// plaintext.
	CAFile string
	// CertFile and KeyFile are the client certificate presented when the
	// server asks for one (mutual TLS); optional.
	CertFile, KeyFile string
	// ServerName overrides the name checked in the server's certificate.
	ServerName string
}

// Enabled reports whether the connection uses TLS.
func (c Client) Enabled() bool { return c.CAFile != "" }

// TLSConfig loads the files and returns the client's TLS configuration, or
// nil (and no error) for plaintext.
func (c Client) TLSConfig() (*tls.Config, error) {
	if !c.Enabled() {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.ServerName}
	if c.CAFile != SystemRoots {
		pool, err := loadPool(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("grpctls: --tls-ca: %w", err)
		}
		cfg.RootCAs = pool
	}
	if c.CertFile != "" || c.KeyFile != "" {
		if c.CertFile == "" || c.KeyFile == "" {
			return nil, errors.New("grpctls: give both --tls-cert and --tls-key for a client certificate")
		}
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("grpctls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// DialOption returns the transport credentials of the connection: TLS
// with the loaded files, or plaintext when no CA is given.
func (c Client) DialOption() (grpc.DialOption, error) {
	cfg, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	return Credentials(cfg), nil
}

// Credentials returns TLS transport credentials for cfg, or plaintext ones
// for nil.
func Credentials(cfg *tls.Config) grpc.DialOption {
	if cfg == nil {
		return grpc.WithTransportCredentials(insecure.NewCredentials())
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(cfg))
}

// Pinned returns a client configuration that accepts exactly the server
// certificate cert and presents cert as its own client certificate: the
// connection of a process to its own server (mailbus serve's fetchers to
// its store), which needs no CA and no name.
func Pinned(cert tls.Certificate) (*tls.Config, error) {
	if len(cert.Certificate) == 0 {
		return nil, errors.New("grpctls: pinned: no certificate")
	}
	want := cert.Certificate[0]
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// The chain is not verified against a CA: the one certificate
		// accepted is compared byte for byte below, and the handshake
		// proves the server holds its key.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], want) {
				return errors.New("grpctls: the server's certificate is not the pinned one")
			}
			return nil
		},
	}, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s: no PEM certificate", path)
	}
	return pool, nil
}

// ServerFlags are the flags of a server's transport security.
type ServerFlags struct {
	certFile, keyFile, clientCAFile *string
	insecure                        *bool
}

// AddServerFlags defines --tls-cert, --tls-key, --tls-client-ca and
// --insecure on fs.
func AddServerFlags(fs *pflag.FlagSet) *ServerFlags {
	return &ServerFlags{
		certFile:     envflag.String(fs, "tls-cert", "MAILBUS_TLS_CERT", "", "TLS certificate (PEM) of the gRPC server; with --tls-key turns TLS on, and is the client certificate when this service dials the store"),
		keyFile:      envflag.String(fs, "tls-key", "MAILBUS_TLS_KEY", "", "private key (PEM) of --tls-cert"),
		clientCAFile: envflag.String(fs, "tls-client-ca", "MAILBUS_TLS_CLIENT_CA", "", "require gRPC clients to present a certificate signed by this CA (mutual TLS)"),
		insecure:     envflag.Bool(fs, "insecure", "MAILBUS_INSECURE", false, "allow plaintext gRPC and metrics on a non-loopback --listen or --metrics-listen address (private networks only; logged as a warning)"),
	}
}

// Server returns the parsed flags.
func (f *ServerFlags) Server() Server {
	return Server{CertFile: *f.certFile, KeyFile: *f.keyFile, ClientCAFile: *f.clientCAFile, Insecure: *f.insecure}
}

// ClientFlags are the flags of a connection to the store.
type ClientFlags struct {
	caFile, serverName *string
}

// AddClientFlags defines --tls-ca and --tls-server-name on fs; the client
// certificate is the service's own (--tls-cert, --tls-key of
// AddServerFlags).
func AddClientFlags(fs *pflag.FlagSet) *ClientFlags {
	return &ClientFlags{
		caFile:     envflag.String(fs, "tls-ca", "MAILBUS_TLS_CA", "", `CA bundle (PEM) verifying the store's certificate, or "system"; turns TLS on for the connection to the store`),
		serverName: envflag.String(fs, "tls-server-name", "MAILBUS_TLS_SERVER_NAME", "", "name the store's certificate must carry, when not the host of --store"),
	}
}

// Client returns the connection's settings, with the service's own
// certificate as client certificate.
func (f *ClientFlags) Client(own Server) Client {
	return Client{CAFile: *f.caFile, ServerName: *f.serverName, CertFile: own.CertFile, KeyFile: own.KeyFile}
}
