package grpctls

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// DefaultReloadInterval is how often Watch reads the certificate files to
// see whether they changed: cert-manager and similar tools renew
// certificates days before they expire, so a minute is prompt enough,
// and reading three small files a minute costs nothing.
const DefaultReloadInterval = time.Minute

// Certs is a server's certificate and client CAs read from the files of a
// Server, which Reload reads again: on SIGHUP and when the files change
// (Watch). The TLS configurations it returns take the current ones at
// each handshake, so a new connection gets the new certificate while an
// established one keeps its session untouched. A reload that fails (a
// key that does not match its certificate, a half-written file) keeps
// the previous certificate and is reported.
//
// The same Certs serves gRPC (TLSConfig), HTTP (WithoutClientAuth) and a
// process's client side (GetClientCertificate, PinnedTo).
type Certs struct {
	srv Server
	cur atomic.Pointer[certState]

	mu sync.Mutex // serialises Reload
	// tried is the hash of the file contents last loaded or tried, so
	// that Watch tries a broken set of files once, not every interval.
	tried [sha256.Size]byte
	// readFailed is set while the files cannot be read (reported once).
	readFailed bool
}

// certState is one loaded set of files.
type certState struct {
	cert *tls.Certificate
	// cfg is the configuration handed to each handshake.
	cfg *tls.Config
}

// Load reads the server's files and returns them as reloadable Certs, or
// nil (and no error) for plaintext.
func (s Server) Load() (*Certs, error) {
	if !s.Enabled() {
		_, err := s.TLSConfig() // the errors of a plaintext configuration
		return nil, err
	}
	c := &Certs{srv: s}
	if _, err := c.Reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// Reload reads the files again and, when they changed and load, makes
// them current; it reports whether the certificate or CAs changed. A
// failure keeps the current ones.
func (c *Certs) Reload() (changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, err := c.filesHash()
	if err != nil {
		return false, err
	}
	return c.load(sum)
}

// load makes the files current; mu is held. sum is their hash.
func (c *Certs) load(sum [sha256.Size]byte) (bool, error) {
	c.tried = sum
	cfg, err := c.srv.TLSConfig()
	if err != nil {
		return false, err
	}
	cert := cfg.Certificates[0]
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return false, fmt.Errorf("grpctls: server certificate: %w", err)
		}
	}
	old := c.cur.Load()
	c.cur.Store(&certState{cert: &cert, cfg: cfg})
	return old == nil || !bytes.Equal(old.cert.Certificate[0], cert.Certificate[0]) || !sameFiles(old, cfg), nil
}

// sameFiles reports whether the client CAs of old and cfg are the same.
func sameFiles(old *certState, cfg *tls.Config) bool {
	switch {
	case old.cfg.ClientCAs == nil && cfg.ClientCAs == nil:
		return true
	case old.cfg.ClientCAs == nil || cfg.ClientCAs == nil:
		return false
	}
	return old.cfg.ClientCAs.Equal(cfg.ClientCAs)
}

// filesHash hashes the contents of the certificate, key and client CA
// files.
func (c *Certs) filesHash() ([sha256.Size]byte, error) {
	h := sha256.New()
	for _, path := range []string{c.srv.CertFile, c.srv.KeyFile, c.srv.ClientCAFile} {
		if path == "" {
			h.Write([]byte{0})
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return [sha256.Size]byte{}, fmt.Errorf("grpctls: %w", err)
		}
		fmt.Fprintf(h, "%d:", len(b))
		h.Write(b)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum, nil
}

// reloadIfChanged reloads when the files differ from the ones last
// loaded or tried; tried reports whether it tried.
func (c *Certs) reloadIfChanged() (tried, changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	sum, err := c.filesHash()
	if err != nil {
		// A file being replaced may be missing for a moment: try again
		// at the next interval, and report it once.
		if c.readFailed {
			return false, false, nil
		}
		c.readFailed = true
		return true, false, err
	}
	c.readFailed = false
	if sum == c.tried {
		return false, false, nil
	}
	changed, err = c.load(sum)
	return true, changed, err
}

// Certificate returns the current certificate.
func (c *Certs) Certificate() *tls.Certificate { return c.cur.Load().cert }

// TLSConfig returns the server configuration for gRPC: each handshake
// uses the certificate and client CAs current at that moment. It is nil
// for nil Certs (plaintext).
func (c *Certs) TLSConfig() *tls.Config {
	if c == nil {
		return nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return c.cur.Load().cfg, nil
		},
	}
}

// GetClientCertificate presents the current certificate as client
// certificate (a service dialing the store shows its own identity).
func (c *Certs) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return c.Certificate(), nil
}

// TLSConfigWith is TLSConfig with own's current certificate as client
// certificate (instead of reading CertFile and KeyFile once), so that a
// service that dials the store presents its renewed certificate on new
// connections. Nil own is TLSConfig.
func (c Client) TLSConfigWith(own *Certs) (*tls.Config, error) {
	if own == nil {
		return c.TLSConfig()
	}
	c.CertFile, c.KeyFile = "", ""
	cfg, err := c.TLSConfig()
	if cfg != nil {
		cfg.GetClientCertificate = own.GetClientCertificate
	}
	return cfg, err
}

// WithoutClientAuth returns a server configuration like cfg (static, or
// one of Certs) that asks no client certificate and offers HTTP/1.1: the
// HTTP /metrics and /healthz endpoints, which Prometheus and the kubelet
// probe without a client certificate. It is nil for nil.
func WithoutClientAuth(cfg *tls.Config) *tls.Config {
	return ForClientsWithoutCertificates(cfg, "http/1.1")
}

// ForClientsWithoutCertificates returns a server configuration like cfg
// (static, or one of Certs, whose reloads it follows) that asks no client
// certificate and offers the ALPN protocols given (none: no ALPN), for
// the clients of a service that have no certificate, such as the mail
// clients of the IMAP gateway. It is nil for nil.
func ForClientsWithoutCertificates(cfg *tls.Config, protos ...string) *tls.Config {
	if cfg == nil {
		return nil
	}
	if len(protos) == 0 {
		protos = nil
	}
	strip := func(c *tls.Config) *tls.Config {
		c = c.Clone()
		c.ClientAuth, c.ClientCAs = tls.NoClientCert, nil
		c.GetConfigForClient = nil
		c.NextProtos = protos
		return c
	}
	if cfg.GetConfigForClient == nil {
		return strip(cfg)
	}
	base := cfg
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: protos,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			c, err := base.GetConfigForClient(hello)
			if err != nil || c == nil {
				return c, err
			}
			return strip(c), nil
		},
	}
}

// PinnedTo is Pinned for the current certificate of c: the connection of
// a process to its own server (mailbus serve's fetchers to its store)
// accepts the certificate the server presents now and presents it as
// its own, so it keeps working across reloads.
func PinnedTo(c *Certs) *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS12,
		GetClientCertificate: c.GetClientCertificate,
		// The chain is not verified against a CA: the certificate is
		// compared byte for byte with the current one below, and the
		// handshake proves the server holds its key.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 || !bytes.Equal(raw[0], c.Certificate().Certificate[0]) {
				return errors.New("grpctls: the server's certificate is not the pinned one")
			}
			return nil
		},
	}
}

// WatchOptions configures Watch.
type WatchOptions struct {
	// Interval is how often the files are read for a change; 0 means
	// DefaultReloadInterval, a negative value reloads on SIGHUP only.
	Interval time.Duration
	// Logger receives a line per reload and per failed one; nil discards.
	Logger *slog.Logger
	// Reloaded, when set, is called after each reload attempt, with its
	// error (tests wait on it).
	Reloaded func(changed bool, err error)
}

// Watch reloads the files on SIGHUP and when they change, until ctx ends.
// It registers for SIGHUP before it returns (so a SIGHUP sent after it
// returns reloads instead of ending the process) and watches in a
// goroutine. Nil Certs watch nothing.
func (c *Certs) Watch(ctx context.Context, o WatchOptions) {
	if c == nil {
		return
	}
	if o.Interval == 0 {
		o.Interval = DefaultReloadInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	var tick <-chan time.Time
	var ticker *time.Ticker
	if o.Interval > 0 {
		ticker = time.NewTicker(o.Interval)
		tick = ticker.C
	}
	report := func(how string, changed bool, err error) {
		switch {
		case err != nil:
			o.Logger.Error("TLS certificate reload failed; serving the previous certificate", "trigger", how, "cert", c.srv.CertFile, "err", err)
		case changed:
			o.Logger.Info("TLS certificate reloaded", "trigger", how, "cert", c.srv.CertFile,
				"subject", c.Certificate().Leaf.Subject.String(), "not_after", c.Certificate().Leaf.NotAfter)
		}
		if o.Reloaded != nil {
			o.Reloaded(changed, err)
		}
	}
	go func() {
		defer signal.Stop(hup)
		if ticker != nil {
			defer ticker.Stop()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				changed, err := c.Reload()
				report("SIGHUP", changed, err)
			case <-tick:
				if tried, changed, err := c.reloadIfChanged(); tried {
					report("file change", changed, err)
				}
			}
		}
	}()
}
