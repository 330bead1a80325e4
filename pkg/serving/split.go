package serving

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/soheilhy/cmux"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// sniffTimeout bounds how long a new connection may take (its TLS
// handshake included) to show what it is before it is handed to the HTTP
// server, as net/http's ReadHeaderTimeout would have.
const sniffTimeout = 30 * time.Second

// splitter hands each connection of the Web listener to one of two
// servers by its first request (decision 33): native gRPC (HTTP/2 whose
// first request has content-type application/grpc, with or without a
// +codec suffix) to grpc-go's own transport, everything else (Connect,
// gRPC-Web, HTTP/1.1, HTTP/2 of any other content type) to net/http.
type splitter struct {
	mux  cmux.CMux
	grpc net.Listener
	web  net.Listener
	// http2 holds the connections (their net.Conn under cmux's) that
	// matchGRPC found to be HTTP/2, until they are accepted: true if it
	// wrote them a SETTINGS frame.
	http2 sync.Map
}

// newSplitter splits lis, whose connections are already past TLS if any.
func newSplitter(lis net.Listener) *splitter {
	s := &splitter{mux: cmux.New(lis)}
	s.mux.SetReadTimeout(sniffTimeout)
	s.grpc = splitListener{Listener: s.mux.MatchWithWriters(s.matchGRPC), wrap: s.grpcConn}
	s.web = splitListener{Listener: s.mux.Match(cmux.Any()), wrap: s.webConn}
	return s
}

// serve splits connections until the listener is closed.
func (s *splitter) serve() error {
	err := s.mux.Serve()
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, cmux.ErrListenerClosed) {
		return nil
	}
	return fmt.Errorf("serving: split: %w", err)
}

func (s *splitter) close() { s.mux.Close() }

// matchGRPC reports whether a connection is HTTP/2 whose first request
// has a gRPC content type. A gRPC client waits for the server's SETTINGS
// frame before it sends a request, so matchGRPC answers the client's
// SETTINGS with an empty one of its own; the server that gets the
// connection then sends its own, and the client's acknowledgment of the
// first is dropped before net/http sees it (webConn): Go's HTTP/2 server
// hangs up on the acknowledgment of SETTINGS it did not send. grpc-go's
// ignores acknowledgments.
func (s *splitter) matchGRPC(w io.Writer, r io.Reader) bool {
	if !hasHTTP2Preface(r) {
		return false
	}
	s.http2.Store(w, false)
	framer := http2.NewFramer(w, r)
	contentType := ""
	hdec := hpack.NewDecoder(4<<10, func(f hpack.HeaderField) {
		if f.Name == "content-type" {
			contentType = f.Value
		}
	})
	for {
		f, err := framer.ReadFrame()
		if err != nil {
			return false
		}
		var fragment []byte
		var end bool
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if f.IsAck() {
				continue
			}
			if err := framer.WriteSettings(); err != nil {
				return false
			}
			s.http2.Store(w, true)
			continue
		case *http2.HeadersFrame:
			fragment, end = f.HeaderBlockFragment(), f.HeadersEnded()
		case *http2.ContinuationFrame:
			fragment, end = f.HeaderBlockFragment(), f.HeadersEnded()
		default:
			continue
		}
		if _, err := hdec.Write(fragment); err != nil {
			return false
		}
		if end {
			return isGRPCContentType(contentType)
		}
	}
}

// hasHTTP2Preface reads HTTP/2's client preface, and stops at the first
// byte that differs (an HTTP/1.1 request, however short).
func hasHTTP2Preface(r io.Reader) bool {
	var got [len(http2.ClientPreface)]byte
	for n := 0; n < len(got); {
		m, err := r.Read(got[n:])
		if string(got[n:n+m]) != http2.ClientPreface[n:n+m] {
			return false
		}
		n += m
		if err != nil && n < len(got) {
			return false
		}
	}
	return true
}

// isGRPCContentType reports whether ct is gRPC's: application/grpc, or
// with a codec (application/grpc+proto), not gRPC-Web's.
func isGRPCContentType(ct string) bool {
	rest, ok := strings.CutPrefix(ct, "application/grpc")
	return ok && (rest == "" || rest[0] == '+' || rest[0] == ';')
}

// grpcConn is a connection for grpc-go's transport, as cmux hands it.
func (s *splitter) grpcConn(c net.Conn) net.Conn {
	s.isHTTP2(c)
	return c
}

// webConn is a connection for net/http, which sees no *tls.Conn and tells
// HTTP/2 (served as h2c) from HTTP/1.1 by its preface. On HTTP/2 the
// acknowledgment of matchGRPC's SETTINGS is dropped. On TLS, an HTTP/1.1
// connection shows its TLS state (Request.TLS); an HTTP/2 one cannot (to
// net/http, a connection with a TLS state is HTTP/1.1 or ALPN's "h2").
func (s *splitter) webConn(c net.Conn) net.Conn {
	h2, sentSettings := s.isHTTP2(c)
	wc := &webConn{Conn: c}
	if sentSettings {
		wc.pass = len(http2.ClientPreface)
		wc.dropping = true
	}
	if mc, ok := c.(*cmux.MuxConn); ok && !h2 {
		if tc, ok := mc.Conn.(*tls.Conn); ok {
			return tlsWebConn{webConn: wc, tls: tc}
		}
	}
	return wc
}

// isHTTP2 reports (once for each connection) whether matchGRPC found c
// to be HTTP/2, and whether it wrote c a SETTINGS frame.
func (s *splitter) isHTTP2(c net.Conn) (h2, sentSettings bool) {
	mc, ok := c.(*cmux.MuxConn)
	if !ok {
		return false, false
	}
	v, h2 := s.http2.LoadAndDelete(mc.Conn)
	if h2 {
		sentSettings = v.(bool)
	}
	return h2, sentSettings
}

// splitListener is one of cmux's listeners, its connections wrapped.
type splitListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l splitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

// webConn drops the client's first SETTINGS acknowledgment from an HTTP/2
// connection (dropping is set): the acknowledgment of matchGRPC's
// SETTINGS, which the client sends before that of the server's.
type webConn struct {
	net.Conn
	dropping bool
	pass     int // bytes of the preface or the current frame still to pass through
	hdr      [9]byte
	hdrN     int    // bytes of the next frame header read
	pending  []byte // bytes of a frame header still to return
}

const (
	frameSettings = 0x4
	flagAck       = 0x1
)

func (c *webConn) Read(p []byte) (int, error) {
	for {
		switch {
		case !c.dropping:
			return c.Conn.Read(p)
		case len(c.pending) > 0:
			n := copy(p, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		case c.pass > 0:
			if len(p) > c.pass {
				p = p[:c.pass]
			}
			n, err := c.Conn.Read(p)
			c.pass -= n
			return n, err
		}
		n, err := c.Conn.Read(c.hdr[c.hdrN:])
		c.hdrN += n
		if c.hdrN < len(c.hdr) {
			if err != nil {
				return 0, err
			}
			continue
		}
		c.hdrN = 0
		length := int(c.hdr[0])<<16 | int(c.hdr[1])<<8 | int(c.hdr[2])
		if c.hdr[3] == frameSettings && c.hdr[4]&flagAck != 0 && length == 0 {
			c.dropping = false
			continue
		}
		c.pending = c.hdr[:]
		c.pass = length
	}
}

// tlsWebConn is a webConn over TLS, with its state for net/http's HTTP/2
// server (Request.TLS).
type tlsWebConn struct {
	*webConn
	tls *tls.Conn
}

func (c tlsWebConn) ConnectionState() tls.ConnectionState { return c.tls.ConnectionState() }
