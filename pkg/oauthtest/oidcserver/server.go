// Package oidcserver runs a real OAuth 2.0 / OpenID Connect authorization
// server on loopback for tests, built on zitadel/oidc's op package (the
// protocol: authorization, token, device authorization, introspection and
// revocation endpoints, PKCE, client authentication) with an in-memory
// storage adapted from its example (Apache-2.0).
//
// It has one user, one native client (like a Google "desktop app" or a
// Microsoft public client with a secret: any loopback redirect port,
// client_secret_post) and one resource client for introspection (what a
// mail server such as Dovecot's oauth2 passdb uses). Access tokens are
// opaque, expire after Options.AccessTokenLifetime (seconds in tests),
// and refresh tokens rotate on every use: the old one is refused
// (invalid_grant) from then on. An authorization request without PKCE
// S256 is refused.
//
// The login page and the device verification page are small forms; a
// test acts as the browser with Authorize, Deny, ApproveDevice and
// DenyDevice, which post them as a user would.
package oidcserver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// Options configure a Server; the zero value works.
type Options struct {
	// AccessTokenLifetime is how long access tokens live; default one
	// minute.
	AccessTokenLifetime time.Duration
	// DevicePollInterval is the device flow's interval (whole seconds);
	// default 1 s.
	DevicePollInterval time.Duration
	// PublicClient makes the mail client a public one (no secret, PKCE
	// alone, as a Microsoft app registration with public client flows).
	PublicClient bool
	// SlowDown makes the first n device token polls
	// answer slow_down, whatever the state of the authorization.
	SlowDown int
}

// User is the server's one user.
type User struct {
	// ID is the subject.
	ID string
	// Username and Password log in on the login and device pages.
	Username, Password string
	// Email is the mail address; introspection answers it as username,
	// email and preferred_username.
	Email string
}

// Server is a running authorization server.
type Server struct {
	// Issuer is the server's base URL, http://127.0.0.1:PORT.
	Issuer string
	// AuthURL, TokenURL, DeviceAuthURL, IntrospectionURL and
	// RevocationURL are its endpoints.
	AuthURL, TokenURL, DeviceAuthURL, IntrospectionURL, RevocationURL string
	// ClientID and ClientSecret are the mail client's (native,
	// client_secret_post, any loopback redirect); ClientSecret is empty for
	// Options.PublicClient.
	ClientID, ClientSecret string
	// ResourceID and ResourceSecret are the mail server's, for
	// introspection (client_secret_basic).
	ResourceID, ResourceSecret string
	// User is the one user.
	User User

	st   *storage
	op   *op.Provider
	srv  *http.Server
	done chan struct{}
	once sync.Once
}

// Start starts a server and stops it when t ends.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// New starts a server on 127.0.0.1 on a free port; Close stops it.
func New(o Options) (*Server, error) {
	if o.AccessTokenLifetime <= 0 {
		o.AccessTokenLifetime = time.Minute
	}
	if o.DevicePollInterval < time.Second {
		o.DevicePollInterval = time.Second
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oidcserver: listen: %w", err)
	}
	s := &Server{Issuer: "http://" + ln.Addr().String(), ClientID: "mailbus-" + random(4), ClientSecret: "client-secret-" + random(16),
		ResourceID: "mailserver-" + random(4), ResourceSecret: "resource-secret-" + random(16),
		User: User{ID: "user-" + random(4), Username: "alice", Password: "password-" + random(8), Email: "alice@example.test"},
		done: make(chan struct{})}
	loginURL := func(id string) string { return "/login?authRequestID=" + id }
	auth := oidc.AuthMethodPost
	if o.PublicClient {
		s.ClientSecret, auth = "", oidc.AuthMethodNone
	}
	s.st = newStorage(o.AccessTokenLifetime, s.User,
		&client{id: s.ClientID, secret: s.ClientSecret, appType: op.ApplicationTypeNative, authMethod: auth,
			redirects: []string{"http://127.0.0.1/"}, loginURL: loginURL,
			grants: []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode}},
		&client{id: s.ResourceID, secret: s.ResourceSecret, appType: op.ApplicationTypeWeb, authMethod: oidc.AuthMethodBasic, loginURL: loginURL})
	s.st.slowDown = o.SlowDown
	var key [32]byte
	_, _ = rand.Read(key[:])
	cfg := &op.Config{
		CryptoKey: key, CodeMethodS256: true, AuthMethodPost: true, GrantTypeRefreshToken: true,
		SupportedUILocales: []language.Tag{language.English},
		DeviceAuthorization: op.DeviceAuthorizationConfig{Lifetime: 5 * time.Minute, PollInterval: o.DevicePollInterval,
			UserFormPath: "/device", UserCode: op.UserCodeBase20},
	}
	s.op, err = op.NewProvider(cfg, s.st, op.StaticIssuer(s.Issuer), op.WithAllowInsecure())
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("oidcserver: %w", err)
	}
	s.AuthURL = s.op.AuthorizationEndpoint().Absolute(s.Issuer)
	s.TokenURL = s.op.TokenEndpoint().Absolute(s.Issuer)
	s.DeviceAuthURL = s.op.DeviceAuthorizationEndpoint().Absolute(s.Issuer)
	s.IntrospectionURL = s.op.IntrospectionEndpoint().Absolute(s.Issuer)
	s.RevocationURL = s.op.RevocationEndpoint().Absolute(s.Issuer)

	mux := http.NewServeMux()
	issuer := op.NewIssuerInterceptor(s.op.IssuerFromRequest)
	mux.Handle("/login", issuer.HandlerFunc(s.login))
	mux.Handle("/device", issuer.HandlerFunc(s.device))
	mux.Handle("/", s.op)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 30 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// Close stops the server.
func (s *Server) Close() {
	s.once.Do(func() {
		s.srv.Close()
		<-s.done
	})
}

// RevokeAll withdraws every grant (refresh and access tokens), as a user
// who removes the app's access: the next refresh is answered
// invalid_grant.
func (s *Server) RevokeAll() { s.st.revokeAll() }

// Refreshes returns how many refresh_token grants the server answered.
func (s *Server) Refreshes() int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return s.st.refreshes
}

// ValidRefreshTokens returns how many refresh tokens the server would
// accept now.
func (s *Server) ValidRefreshTokens() int {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return len(s.st.refresh)
}

// DevicePolls returns when the device flow's token endpoint was polled.
func (s *Server) DevicePolls() []time.Time {
	s.st.mu.Lock()
	defer s.st.mu.Unlock()
	return append([]time.Time(nil), s.st.polls...)
}

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// errPage is a page the browser helpers did not expect.
var errPage = errors.New("oidcserver: unexpected page")

// withTimeout bounds a helper's requests when ctx has no deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, time.Minute)
}
