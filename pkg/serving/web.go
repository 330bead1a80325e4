package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"github.com/soheilhy/cmux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"

	"github.com/mailbus/mailbus/pkg/pbjson"
)

// Web configures serving the gRPC listener for the Web as well
// (Config.Web): besides gRPC, the same services answer Connect (JSON and
// binary) and gRPC-Web, over HTTP/1.1 and HTTP/2 (h2c in plaintext, ALPN
// with TLS). Each connection goes by its first request (splitter): native
// gRPC to grpc-go's own transport, everything else to net/http, where
// vanguard translates each Connect or gRPC-Web call into a gRPC call to
// the very same grpc.Server (its ServeHTTP). So every call goes through the
// same interceptors and handlers whatever its protocol.
type Web struct {
	// CORSOrigins are the browser origins allowed to call the API from
	// another origin ("*" allows any); empty answers no CORS request.
	CORSOrigins []string
	// Keepalive is how long a connection may be silent before the server
	// pings it; one that does not answer within Keepalive more is closed
	// (with its streams). 0 sends no pings. It applies to both transports
	// (New sets grpc.KeepaliveParams; do not set them in ServerOptions).
	Keepalive time.Duration
	// IdleTimeout closes a connection that carries no call for this long:
	// an HTTP/1.1 connection waiting for its next request, an HTTP/2 one
	// with no open stream. A call in progress, however silent (a watch
	// stream), keeps its connection. 0 means DefaultIdleTimeout; negative
	// never closes an idle connection.
	IdleTimeout time.Duration
	// MaxRequestBytes bounds a request message as the grpc.Server's
	// MaxRecvMsgSize does, and is to be the same; 0 means gRPC's default,
	// 4 MiB. Connect and gRPC-Web bodies are read (JSON: buffered whole,
	// to transcode) before the interceptors check the token, so without
	// it anyone reaching the port could make the server buffer a body of
	// up to 4 GiB (vanguard's default) per call. It also bounds how far
	// a request stream is read ahead of its handler (recvGated): a
	// grpc.MaxRecvMsgSize larger than it would hang the calls whose
	// messages are larger.
	MaxRequestBytes uint32
	// Admit, when set, is asked about each call from its method
	// (/package.Service/Method) and headers (as gRPC metadata: names in
	// lower case), before its body is read: for native gRPC as grpc-go's
	// InTapHandle, for the rest (Connect, gRPC-Web, gRPC through net/http)
	// before vanguard reads the request. An error (a gRPC status) refuses
	// the call with it, in the call's protocol; nil lets it through to the
	// interceptors, which check everything again. The store refuses here a
	// call without a token that works, so that such a caller cannot make
	// it read, and for JSON buffer, a request body of up to
	// MaxRequestBytes first. On native gRPC it runs on the connection's
	// reader goroutine, so it should be quick (a cache lookup).
	Admit func(ctx context.Context, method string, md metadata.MD) error
	// Pages, when set, answers the GET and HEAD requests whose path is not
	// under a registered service (a browser asking for "/"): the store's
	// web console. Every other request goes to the API as before, so a
	// call of an unknown method still gets its protocol's error.
	Pages http.Handler
}

// DefaultIdleTimeout is Web.IdleTimeout when 0: an idle keep-alive
// connection (a browser's, a curl's) is not held forever.
const DefaultIdleTimeout = 5 * time.Minute

// defaultMaxRequestBytes is grpc-go's default MaxRecvMsgSize.
const defaultMaxRequestBytes = 4 << 20

// CheckOrigins checks a list of CORS origins: each is "*" or a browser
// origin, scheme://host[:port], with no path.
func CheckOrigins(origins []string) error {
	for _, o := range origins {
		if o == "*" {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
			(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("CORS origin %q: want scheme://host[:port], such as https://app.example.com, or *", o)
		}
	}
	return nil
}

// corsAllowedHeaders are the request headers a browser may send: the
// bearer token, and those of the Connect and gRPC-Web protocols.
var corsAllowedHeaders = []string{
	"Authorization", "Content-Type", "Content-Encoding", "Accept-Encoding",
	"Connect-Protocol-Version", "Connect-Timeout-Ms", "Connect-Content-Encoding", "Connect-Accept-Encoding",
	"Grpc-Timeout", "X-Grpc-Web", "X-User-Agent",
}

// corsExposedHeaders are the response headers a browser script may read:
// the status and trailers of gRPC-Web and Connect streaming.
var corsExposedHeaders = []string{
	"Grpc-Status", "Grpc-Message", "Grpc-Status-Details-Bin",
	"Content-Encoding", "Connect-Content-Encoding",
}

// webServer builds the HTTP server of the gRPC listener: the vanguard
// transcoder of the grpc.Server (all services registered by now), behind
// the CORS rules.
func (s *Server) webServer() (*http.Server, error) {
	w := s.cfg.Web
	maxRequest := w.MaxRequestBytes
	if maxRequest == 0 {
		maxRequest = defaultMaxRequestBytes
	}
	// As vanguardgrpc.NewTranscoder, with every call of every protocol
	// (vanguard hands the grpc.Server a gRPC body) read through recvGated.
	target := recvGated(s.GRPC, maxRequest)
	var services []*vanguard.Service
	for name := range s.GRPC.GetServiceInfo() {
		services = append(services, vanguard.NewService(name, target))
	}
	transcoder, err := vanguard.NewTranscoder(services, vanguard.WithCodec(newJSONCodec),
		vanguard.WithDefaultServiceOptions(vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC), vanguard.WithMaxMessageBufferBytes(maxRequest)))
	if err != nil {
		return nil, fmt.Errorf("serving: %s: connect transcoder: %w", s.cfg.Name, err)
	}
	// 0: http.Server has no ReadTimeout either, so none.
	idle := w.idleTimeout()
	// HTTP/2 "unencrypted" with TLS too: TLS is ended before the split
	// (webConn), so net/http never sees a *tls.Conn and tells HTTP/2 by
	// its preface.
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	return &http.Server{
		Handler: withPages(s.GRPC.GetServiceInfo(), w.Pages,
			cors(w.CORSOrigins, connectUnaryByDefault(admit(w.Admit, transcoder)))),
		Protocols:         &protocols,
		ReadHeaderTimeout: 30 * time.Second,
		// Only between calls: net/http sets it as the read deadline of an
		// HTTP/1.1 connection once a response is written, and runs it on
		// an HTTP/2 connection while no stream is open (HTTP2Config has
		// no IdleTimeout of its own: the http.Server's applies).
		IdleTimeout: idle,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout:      w.Keepalive,
			PingTimeout:          w.Keepalive,
			MaxConcurrentStreams: maxConcurrentStreams,
		},
		// Failed handshakes and malformed connections (scanners, a client
		// speaking plaintext to TLS) at debug, as grpc-go kept them out
		// of the log by default.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}, nil
}

// jsonCodec is vanguard's JSON codec with a body that is not JSON of the
// method's request (a syntax error, a string where a number goes) answered
// as INVALID_ARGUMENT naming the field, as RejectMalformed does for
// protobuf, instead of UNKNOWN. Unknown fields are ignored, as Connect
// and protobuf do, so that an older store serves a newer client. Fields
// at their zero value are left out of answers, which pbjson writes.
type jsonCodec struct{ *vanguard.JSONCodec }

func newJSONCodec(res vanguard.TypeResolver) vanguard.Codec {
	c := vanguard.NewJSONCodec(res)
	// As connect-go: fields at their zero value are left out (vanguard
	// writes them all), which makes answers smaller and faster to write
	// and read; Connect and protobuf JSON readers take a missing field as
	// its zero value.
	c.MarshalOptions.EmitUnpopulated = false
	return jsonCodec{c}
}

// MarshalAppend writes an answer with pbjson, the same JSON as
// protojson's with these options in a third of its time (decision 35);
// what pbjson leaves to protojson, protojson writes.
func (c jsonCodec) MarshalAppend(base []byte, msg proto.Message) ([]byte, error) {
	if out, err := pbjson.Append(base, msg.ProtoReflect()); err == nil {
		return out, nil
	}
	return c.JSONCodec.MarshalAppend(base, msg)
}

func (c jsonCodec) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.JSONCodec.Unmarshal(data, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("malformed request: not valid JSON of the method's request: %w", err))
	}
	return nil
}

// webListener wraps lis in TLS when the server has it, offering HTTP/2 and
// HTTP/1.1 by ALPN. A configuration that hands out another per handshake
// (GetConfigForClient: certificates reloaded by pkg/grpctls) gets the same
// protocols added to each one it returns.
func webListener(lis net.Listener, cfg *tls.Config) net.Listener {
	if cfg == nil {
		return lis
	}
	return tls.NewListener(lis, withALPN(cfg))
}

// webProtos are the ALPN protocols of the web listener, best first.
var webProtos = []string{"h2", "http/1.1"}

func withALPN(cfg *tls.Config) *tls.Config {
	c := cfg.Clone()
	c.NextProtos = webProtos
	if base := cfg.GetConfigForClient; base != nil {
		c.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			got, err := base(hello)
			if err != nil || got == nil {
				return got, err
			}
			got = got.Clone()
			got.NextProtos = webProtos
			return got, nil
		}
	}
	return c
}

// cors answers the cross-origin requests of browsers from the listed
// origins: a preflight (OPTIONS with Access-Control-Request-Method) gets
// the methods and headers allowed, the Authorization header among them;
// a call gets Access-Control-Allow-Origin and the headers it may read. A
// request from an origin not listed gets no CORS header (the browser then
// refuses it), and its preflight is refused with 403.
func cors(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	origins = slices.Clone(origins)
	for i, o := range origins {
		origins[i] = strings.TrimSuffix(o, "/")
	}
	anyOrigin := slices.Contains(origins, "*")
	allowed := func(origin string) bool {
		return anyOrigin || slices.Contains(origins, origin)
	}
	allowHeaders := strings.Join(corsAllowedHeaders, ", ")
	exposeHeaders := strings.Join(corsExposedHeaders, ", ")
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if !allowed(origin) {
			if preflight {
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "GET, POST")
			h.Set("Access-Control-Allow-Headers", allowHeaders)
			h.Set("Access-Control-Max-Age", "7200")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", exposeHeaders)
		next.ServeHTTP(w, r)
	})
}

// connectUnaryByDefault marks a POST of application/json or
// application/proto without Connect-Protocol-Version as Connect: vanguard
// takes it for REST, which the services do not map (no google.api.http
// rules), and would answer 404, while connect-go servers accept it as
// Connect. So curl needs no more than the content type.
func connectUnaryByDefault(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.Header.Get("Connect-Protocol-Version") == "" {
			switch ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) {
			case "application/json", "application/proto":
				r.Header.Set("Connect-Protocol-Version", "1")
			}
		}
		next.ServeHTTP(w, r)
	})
}

// withPages sends to pages the GET and HEAD requests whose first path
// segment is not a service name (the API's paths are
// /<package.Service>/<Method>), and every other request to api.
func withPages(services map[string]grpc.ServiceInfo, pages, api http.Handler) http.Handler {
	if pages == nil {
		return api
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			first, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
			if _, isService := services[first]; !isService {
				pages.ServeHTTP(w, r)
				return
			}
		}
		api.ServeHTTP(w, r)
	})
}

// admit refuses, with check's error in the call's protocol and without
// reading its body, a call that check refuses (see Web.Admit).
func admit(check func(context.Context, string, metadata.MD) error, next http.Handler) http.Handler {
	if check == nil {
		return next
	}
	errWriter := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if errWriter.IsSupported(r) {
			if err := check(r.Context(), r.URL.Path, headerMetadata(r.Header)); err != nil {
				st := status.Convert(err)
				_ = errWriter.Write(w, r, connect.NewError(connect.Code(st.Code()), errors.New(st.Message())))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// headerMetadata is h as gRPC metadata, its names in lower case.
func headerMetadata(h http.Header) metadata.MD {
	md := make(metadata.MD, len(h))
	for name, values := range h {
		md[strings.ToLower(name)] = values
	}
	return md
}

// admitTap is Web.Admit as grpc-go's InTapHandle, for native gRPC calls:
// it runs once a call's headers are in, before its stream exists.
func admitTap(check func(context.Context, string, metadata.MD) error) grpc.ServerOption {
	return grpc.InTapHandle(func(ctx context.Context, info *tap.Info) (context.Context, error) {
		return ctx, check(ctx, info.FullMethodName, info.Header)
	})
}

// clientPingMin is the shortest keepalive interval a native gRPC client
// may use: grpc-go's transport closes (GOAWAY too_many_pings) the
// connection of a client that pings more often (its default allows one
// ping in 5 minutes, which would close the fetchers' connections). Go's
// HTTP/2 server does not police pings.
const clientPingMin = 20 * time.Second

// maxConcurrentStreams bounds the calls on one connection, on both
// transports: grpc-go's own transport set no limit; Go's HTTP/2 default,
// 250, would hold up a client that watches many accounts on one
// connection.
const maxConcurrentStreams = 1000

// nativeOptions are the grpc.Server options that give grpc-go's own
// transport the Web's connection rules: keepalive, the idle timeout, the
// stream limit and Admit.
func (w *Web) nativeOptions() []grpc.ServerOption {
	params := keepalive.ServerParameters{Time: infinity, Timeout: infinity, MaxConnectionIdle: w.idleTimeout()}
	if w.Keepalive > 0 {
		params.Time, params.Timeout = w.Keepalive, w.Keepalive
	}
	if params.MaxConnectionIdle == 0 {
		params.MaxConnectionIdle = infinity
	}
	opts := []grpc.ServerOption{
		grpc.KeepaliveParams(params),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: clientPingMin, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
	}
	if w.Admit != nil {
		opts = append(opts, admitTap(w.Admit))
	}
	return opts
}

// infinity is grpc-go's "never" for keepalive durations.
const infinity = time.Duration(math.MaxInt64)

// idleTimeout is IdleTimeout with its default; 0 means never.
func (w *Web) idleTimeout() time.Duration {
	switch {
	case w.IdleTimeout == 0:
		return DefaultIdleTimeout
	case w.IdleTimeout < 0:
		return 0
	}
	return w.IdleTimeout
}

// serveWeb serves lis with hs until it fails or is shut down.
func serveWeb(hs *http.Server, lis net.Listener) error {
	if err := hs.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving: %w", err)
	}
	return nil
}

// serveNative serves lis with grpc-go's own transport until it fails or
// the server is stopped. The listener closes when the HTTP server's
// shutdown closes the listener they share; that is no failure.
func serveNative(gs *grpc.Server, lis net.Listener) error {
	err := gs.Serve(lis)
	if err == nil || errors.Is(err, net.ErrClosed) || errors.Is(err, cmux.ErrListenerClosed) || errors.Is(err, cmux.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("serving: grpc: %w", err)
}

// stopWeb stops hs gracefully within timeout: no new calls, the running
// ones finish (the service ends its streams when its context ends), then
// the rest are closed.
func stopWeb(hs *http.Server, timeout time.Duration) (graceful bool) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := hs.Shutdown(ctx); err != nil {
		hs.Close()
		return false
	}
	return true
}
