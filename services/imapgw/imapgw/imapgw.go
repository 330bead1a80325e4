// Package imapgw is the IMAP gateway: an IMAP4rev1 server (go-imap v2's
// imapserver) in front of the store, so that any mail client is a device
// (issue 15, decision 0041).
//
// The gateway keeps no mail of its own and talks to the store only through
// the mailbus.v1 gRPC API, like any other device, with the client's own
// API token on every call:
//
//   - LOGIN (or AUTHENTICATE PLAIN) takes the account's name or its
//     upstream user name as user name and a device API token as password
//     (admin and service tokens are refused). TokenService.GetCallerToken tells which accounts the token
//     reaches and whether it is read-only; AccountService.ListAccounts
//     finds the account among them.
//   - Mailboxes, UIDVALIDITY, UIDNEXT and UIDs come from the store
//     (Mailbox.imap_uidvalidity, imap_uidnext, MessageSummary.imap_uid),
//     so they are the same after a restart of the gateway and on every
//     replica (decision 0040).
//   - Each change is a MailboxService call with device_id "imap:<token
//     id>", so it fans out as events with that origin and, on IMAP
//     accounts, is written back upstream.
//   - Changes from any source reach the selected mailbox of every session
//     (unsolicited EXISTS, EXPUNGE and FETCH FLAGS, also during IDLE) from
//     one SyncService.WatchChanges stream per account, shared by all the
//     sessions of that account (hub.go).
//
// A session keeps the client's view of its selected mailbox: the UIDs in
// sequence order with the message ids and flags (selected.go). It changes
// only when the session tells the client, which keeps sequence numbers
// right while other devices change the mailbox.
package imapgw

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/mailbus/mailbus/pkg/imapserver"
	"google.golang.org/grpc"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/grpctls"
)

// Defaults.
const (
	// DefaultListen is the address of mailbus serve's gateway.
	DefaultListen = "127.0.0.1:7143"
	// DefaultMaxMessageSize is the store's default largest message: the
	// APPEND limit.
	DefaultMaxMessageSize = 64 << 20
	// DefaultMaxAppendBytes bounds the announced sizes of the APPEND
	// literals in flight in the whole gateway at once.
	DefaultMaxAppendBytes = 256 << 20
	// DefaultMaxConnsPerToken limits the connections open at once with one
	// token: a mail client opens a few (Thunderbird 5 by default).
	DefaultMaxConnsPerToken = 50
	// DefaultLoginFailures failed logins with one user name from one
	// address (an IPv6 /64), or DefaultLoginFailuresPerAddress with any
	// user names, within DefaultLoginWindow make further logins with that
	// name (from that address) fail at once until the window has passed.
	DefaultLoginFailures           = 10
	DefaultLoginFailuresPerAddress = 100
	DefaultLoginWindow             = time.Minute
	// DefaultMaxPreAuthConnsPerAddress limits the connections from one
	// address that have not logged in yet (imapserver ends them after 30
	// s without a command); one more is told BYE.
	DefaultMaxPreAuthConnsPerAddress = 20
	// DefaultTokenCheck is how often the tokens of logged-in sessions are
	// checked with the store: a revoked or expired token's sessions end
	// (BYE) within this time.
	DefaultTokenCheck = 30 * time.Second
)

// Config configures the gateway. The zero value of a field means its
// default; StoreConn is required.
type Config struct {
	// StoreConn is the connection to the store's gRPC API. It must carry
	// no API token of its own: every call carries the logged-in client's.
	StoreConn grpc.ClientConnInterface
	// Listen is the plaintext (STARTTLS when TLS is set) address; default
	// DefaultListen. "-" serves none (TLSListen only). Listener, when set,
	// is used instead.
	Listen   string
	Listener net.Listener
	// TLSListen, when set, serves implicit TLS (IMAPS) there too; it needs
	// TLS. TLSListener, when set, is used instead.
	TLSListen   string
	TLSListener net.Listener
	// TLS is the server certificate for STARTTLS and TLSListen.
	TLS *tls.Config
	// Insecure allows Listen on a non-loopback address without TLS
	// (decision 0017). Even then LOGIN and AUTHENTICATE are refused on a
	// plaintext connection from another host.
	Insecure bool
	// MaxMessageSize is the largest APPEND (APPENDLIMIT): the store's
	// maximum message size; default DefaultMaxMessageSize.
	MaxMessageSize int64
	// MaxAppendBytes bounds the bytes of the APPEND literals in flight in
	// the whole gateway (by their announced sizes, held from before the
	// literal is read until the store answered): one more waits, or, on a
	// connection that ends, gives up; default DefaultMaxAppendBytes. It
	// lowers APPENDLIMIT if it is below MaxMessageSize.
	MaxAppendBytes int64
	// MaxConnsPerToken limits the logged-in connections of one token;
	// default DefaultMaxConnsPerToken.
	MaxConnsPerToken int
	// LoginFailures with one user name from one remote address (an IPv6
	// /64), or LoginFailuresPerAddress with any, within LoginWindow make
	// further logins with that name (from that address) fail at once;
	// defaults DefaultLoginFailures, DefaultLoginFailuresPerAddress and
	// DefaultLoginWindow.
	LoginFailures           int
	LoginFailuresPerAddress int
	LoginWindow             time.Duration
	// MaxPreAuthConnsPerAddress limits the connections of one remote
	// address not logged in yet; default DefaultMaxPreAuthConnsPerAddress.
	MaxPreAuthConnsPerAddress int
	// TokenCheck is how often the tokens of logged-in sessions are asked
	// about (GetCallerToken); the sessions of one the store no longer
	// accepts end. Default DefaultTokenCheck.
	TokenCheck time.Duration
	// Logger receives the gateway's logs; nil discards them.
	Logger *slog.Logger
	// Ready, if set, is called with the plaintext and TLS addresses (""
	// for none) once the gateway accepts connections.
	Ready func(addr, tlsAddr string)
}

// Gateway is the IMAP gateway.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	hub     *hub
	logins  *loginThrottle
	preAuth *preAuthConns
	flags   *flagSets
	appends *appendBudget

	panics atomic.Int64

	mu     sync.Mutex
	tokens map[string]*tokenSessions // by token id
}

// tokenSessions are the logged-in sessions of one token.
type tokenSessions struct {
	secret   string
	sessions map[*session]struct{}
}

// New checks the configuration.
func New(cfg Config) (*Gateway, error) {
	if cfg.StoreConn == nil {
		return nil, errors.New("imapgw: no store connection")
	}
	if cfg.Listen == "" && cfg.Listener == nil {
		cfg.Listen = DefaultListen
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	if cfg.MaxMessageSize > 1<<32-1 {
		cfg.MaxMessageSize = 1<<32 - 1
	}
	if cfg.MaxAppendBytes <= 0 {
		cfg.MaxAppendBytes = DefaultMaxAppendBytes
	}
	if cfg.MaxConnsPerToken <= 0 {
		cfg.MaxConnsPerToken = DefaultMaxConnsPerToken
	}
	if cfg.LoginFailures <= 0 {
		cfg.LoginFailures = DefaultLoginFailures
	}
	if cfg.LoginFailuresPerAddress <= 0 {
		cfg.LoginFailuresPerAddress = max(DefaultLoginFailuresPerAddress, cfg.LoginFailures)
	}
	if cfg.MaxPreAuthConnsPerAddress <= 0 {
		cfg.MaxPreAuthConnsPerAddress = DefaultMaxPreAuthConnsPerAddress
	}
	if cfg.LoginWindow <= 0 {
		cfg.LoginWindow = DefaultLoginWindow
	}
	if cfg.TokenCheck <= 0 {
		cfg.TokenCheck = DefaultTokenCheck
	}
	if (cfg.TLSListen != "" || cfg.TLSListener != nil) && cfg.TLS == nil {
		return nil, errors.New("imapgw: the implicit TLS listener needs a certificate (--tls-cert, --tls-key)")
	}
	if cfg.Listener == nil && cfg.Listen != "-" {
		if _, err := grpctls.CheckListen(cfg.Listen, cfg.TLS != nil, cfg.Insecure); err != nil {
			return nil, fmt.Errorf("imapgw: --imap-listen %w", err)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, log: log, tokens: map[string]*tokenSessions{}, flags: &flagSets{}}
	g.hub = newHub(cfg.StoreConn, log)
	g.logins = newLoginThrottle(cfg.LoginFailures, cfg.LoginFailuresPerAddress, cfg.LoginWindow)
	g.preAuth = &preAuthConns{max: cfg.MaxPreAuthConnsPerAddress, conns: map[string]int{}}
	g.appends = newAppendBudget(cfg.MaxAppendBytes)
	return g, nil
}

// Caps are the capabilities the gateway announces (besides those
// imapserver adds by itself: SASL-IR, LITERAL-, UNSELECT, ENABLE, IDLE,
// UTF8=ACCEPT, STARTTLS with TLS, AUTH=PLAIN, APPENDLIMIT=).
var Caps = imap.CapSet{
	imap.CapIMAP4rev1:    {},
	imap.CapNamespace:    {},
	imap.CapUIDPlus:      {},
	imap.CapMove:         {},
	imap.CapSpecialUse:   {},
	imap.CapListExtended: {},
	imap.CapListStatus:   {},
	imap.CapLiteralPlus:  {},
	imap.CapCondStore:    {},
	imap.CapQResync:      {},
	imap.CapChildren:     {},
	imap.CapESearch:      {},
}

// Run serves until ctx ends.
func (g *Gateway) Run(ctx context.Context) error {
	// Plaintext connections from loopback go to a server that allows
	// authentication without TLS, all others (implicit TLS included) to
	// one that does not (listen.go).
	type served struct {
		srv *imapserver.Server
		ln  net.Listener
	}
	var lns []net.Listener
	var serve []served
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	newServer := func(insecureAuth bool) *imapserver.Server {
		return imapserver.New(&imapserver.Options{
			NewSession:   g.newSession,
			Caps:         Caps,
			Logger:       slogPrintf{log: g.log, panics: &g.panics},
			TLSConfig:    g.cfg.TLS,
			InsecureAuth: insecureAuth,
		})
	}
	local, remote := newServer(true), newServer(false)
	addr, tlsAddr := "", ""
	if ln := g.cfg.Listener; ln != nil || g.cfg.Listen != "-" {
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", g.cfg.Listen); err != nil {
				return fmt.Errorf("imapgw: %w", err)
			}
		}
		lns = append(lns, ln)
		addr = ln.Addr().String()
		split := newSplitListener(ln)
		serve = append(serve, served{local, split.loop}, served{remote, split.remote})
	}
	if ln := g.cfg.TLSListener; ln != nil || g.cfg.TLSListen != "" {
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", g.cfg.TLSListen); err != nil {
				closeAll()
				return fmt.Errorf("imapgw: %w", err)
			}
		}
		lns = append(lns, ln)
		tlsAddr = ln.Addr().String()
		serve = append(serve, served{remote, tls.NewListener(ln, g.cfg.TLS)})
	}
	if len(lns) == 0 {
		return errors.New("imapgw: no listener")
	}
	errc := make(chan error, len(serve))
	for _, sv := range serve {
		go func() { errc <- sv.srv.Serve(sv.ln) }()
	}
	g.log.Info("imap gateway serving", "addr", addr, "tls_addr", tlsAddr)
	if g.cfg.Ready != nil {
		g.cfg.Ready(addr, tlsAddr)
	}
	checkCtx, stopCheck := context.WithCancel(ctx)
	defer stopCheck()
	go g.checkTokens(checkCtx)
	var err error
	returned := 0
	select {
	case <-ctx.Done():
	case err = <-errc:
		returned++
	}
	stopCheck()
	// The listeners first, and every Serve returned, before the servers
	// close their connections: imapserver's Close waits for its Serve
	// calls with a WaitGroup that a Serve only starting would race with.
	closeAll()
	for ; returned < len(serve); returned++ {
		<-errc
	}
	local.Close()
	remote.Close()
	g.hub.close()
	if err != nil {
		return fmt.Errorf("imapgw: %w", err)
	}
	return nil
}

// acquire records a logged-in session of a token; false when the token
// has MaxConnsPerToken sessions already.
func (g *Gateway) acquire(tokenID, secret string, s *session) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t := g.tokens[tokenID]
	if t == nil {
		t = &tokenSessions{secret: secret, sessions: map[*session]struct{}{}}
		g.tokens[tokenID] = t
	}
	if len(t.sessions) >= g.cfg.MaxConnsPerToken {
		return false
	}
	t.sessions[s] = struct{}{}
	return true
}

func (g *Gateway) release(tokenID string, s *session) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if t := g.tokens[tokenID]; t != nil {
		delete(t.sessions, s)
		if len(t.sessions) == 0 {
			delete(g.tokens, tokenID)
		}
	}
}

// checkTokens asks the store about the token of every logged-in session
// every TokenCheck and ends the sessions of a token it no longer accepts
// (revoked, expired): an IDLEing client would otherwise go on receiving
// the account's updates from the shared stream, which runs with another
// session's token.
func (g *Gateway) checkTokens(ctx context.Context) {
	t := time.NewTicker(g.cfg.TokenCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		g.mu.Lock()
		secrets := make(map[string]string, len(g.tokens))
		for id, ts := range g.tokens {
			secrets[id] = ts.secret
		}
		g.mu.Unlock()
		for id, secret := range secrets {
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			_, err := mailbusv1.NewTokenServiceClient(g.cfg.StoreConn).GetCallerToken(cctx, &mailbusv1.GetCallerTokenRequest{}, grpc.PerRPCCredentials(apitoken.Credentials(secret)))
			cancel()
			if status.Code(err) != codes.Unauthenticated {
				continue // accepted, or the store is unreachable: ask again later
			}
			g.log.Info("imap gateway: ending the sessions of a token the store no longer accepts", "token", id)
			g.mu.Lock()
			var ended []*session
			if ts := g.tokens[id]; ts != nil {
				for s := range ts.sessions {
					ended = append(ended, s)
				}
			}
			g.mu.Unlock()
			for _, s := range ended {
				s.conn.Bye("The token was revoked or has expired")
			}
		}
	}
}

// Panics returns how many panics imapserver recovered from (in a session
// or its IDLE): each one is also logged as an error. Tests fail on any.
func (g *Gateway) Panics() int64 { return g.panics.Load() }

// slogPrintf is imapserver's Logger on slog: a recovered panic is an
// error (and counted), the rest (mostly clients that went away) debug.
type slogPrintf struct {
	log    *slog.Logger
	panics *atomic.Int64
}

func (l slogPrintf) Printf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if strings.HasPrefix(format, "panic ") {
		l.panics.Add(1)
		l.log.Error("imap gateway: recovered from a panic", "panic", msg)
		return
	}
	l.log.Debug(msg)
}

// ServerTLS returns the IMAP server's TLS configuration from a gRPC
// server's (static, or pkg/grpctls Certs' with reloads): the same
// certificate, no client certificate asked (mail clients have none), and
// no ALPN protocols of gRPC's. It is nil for nil.
func ServerTLS(cfg *tls.Config) *tls.Config {
	return grpctls.ForClientsWithoutCertificates(cfg)
}
