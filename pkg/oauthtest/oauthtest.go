// Package oauthtest runs an OAuth 2.0 token endpoint on loopback for tests:
// the refresh_token grant of RFC 6749 section 6, with access tokens that
// expire after a set lifetime, refresh tokens that rotate on every use
// (the old one is then refused with invalid_grant, as Microsoft and
// rotating servers do), revocation, and a count of the requests it
// answered.
//
// It checks the client id and secret (client_secret_post, as
// services/store sends them) and answers errors as RFC 6749 section 5.2
// says: invalid_client with HTTP 401, invalid_grant with HTTP 400.
//
// IntrospectionURL is a token introspection endpoint (RFC 7662) for a mail
// server that validates the access tokens (Dovecot's oauth2 passdb).
package oauthtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"
)

// Server is a token endpoint. Its methods are safe for concurrent use.
type Server struct {
	// URL is the token endpoint (plain HTTP on 127.0.0.1).
	URL string
	// ClientID and ClientSecret are the one client it knows.
	ClientID, ClientSecret string

	srv      *httptest.Server
	lifetime time.Duration
	rotate   bool
	delay    time.Duration

	mu       sync.Mutex
	refresh  map[string]bool      // refresh token -> valid
	access   map[string]time.Time // access token -> expiry
	hits     int
	grants   int
	failNext int
	intro    introspection // introspect.go
}

// Option configures a Server.
type Option func(*Server)

// WithLifetime sets how long access tokens live (expires_in); default one
// hour.
func WithLifetime(d time.Duration) Option { return func(s *Server) { s.lifetime = d } }

// WithRotation makes every refresh issue a new refresh token and refuse
// the old one from then on.
func WithRotation() Option { return func(s *Server) { s.rotate = true } }

// WithDelay makes each answer wait d, so that concurrent requests overlap.
func WithDelay(d time.Duration) Option { return func(s *Server) { s.delay = d } }

// New starts a server; Close stops it.
func New(opts ...Option) *Server {
	s := &Server{ClientID: "mailbus-test-client", ClientSecret: "client-secret-" + random(), lifetime: time.Hour,
		refresh: map[string]bool{}, access: map[string]time.Time{}}
	for _, o := range opts {
		o(s)
	}
	s.srv = httptest.NewServer(http.HandlerFunc(s.route))
	s.URL = s.srv.URL + "/token"
	return s
}

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Grant issues a refresh token, as an authorization would.
func (s *Server) Grant() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt := "refresh-" + random()
	s.refresh[rt] = true
	return rt
}

// Revoke makes every refresh token refused from now on (invalid_grant), as
// a user who withdraws the app's access does.
func (s *Server) Revoke() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for rt := range s.refresh {
		s.refresh[rt] = false
	}
}

// FailNext makes the next n requests fail with HTTP 503 and a body that is
// not JSON (a token endpoint at fault, not a refused grant).
func (s *Server) FailNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// Hits returns how many token requests the server received.
func (s *Server) Hits() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits
}

// Refreshes returns how many refreshes it granted.
func (s *Server) Refreshes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants
}

// Valid reports whether an access token was issued by the server and has
// not expired (what a mail server's token introspection would check).
func (s *Server) Valid(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.access[token]
	return ok && time.Now().Before(exp)
}

// ValidRefreshToken reports whether a refresh token would be accepted.
func (s *Server) ValidRefreshToken(rt string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[rt]
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if s.delay > 0 {
		time.Sleep(s.delay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hits++
	if s.failNext > 0 {
		s.failNext--
		http.Error(w, "<html>upstream overloaded</html>", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil {
		answerError(w, http.StatusBadRequest, "invalid_request", "want a form POST")
		return
	}
	if r.PostForm.Get("client_id") != s.ClientID || r.PostForm.Get("client_secret") != s.ClientSecret {
		answerError(w, http.StatusUnauthorized, "invalid_client", "client authentication failed")
		return
	}
	if r.PostForm.Get("grant_type") != "refresh_token" {
		answerError(w, http.StatusBadRequest, "unsupported_grant_type", "only refresh_token")
		return
	}
	rt := r.PostForm.Get("refresh_token")
	if !s.refresh[rt] {
		answerError(w, http.StatusBadRequest, "invalid_grant", "the refresh token is invalid, expired or revoked")
		return
	}
	s.grants++
	at := "access-" + random()
	s.access[at] = time.Now().Add(s.lifetime)
	ans := map[string]any{"access_token": at, "token_type": "Bearer", "expires_in": int(s.lifetime / time.Second)}
	if s.rotate {
		s.refresh[rt] = false
		next := "refresh-" + random()
		s.refresh[next] = true
		ans["refresh_token"] = next
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ans)
}

func answerError(w http.ResponseWriter, code int, e, desc string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e, "error_description": desc})
}

func random() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
