package oauthtest

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"time"
)

// introspection is the state of the token introspection endpoint (RFC
// 7662) that a mail server (Dovecot's oauth2 passdb) asks whether an
// access token is valid.
type introspection struct {
	// subject is the user every grant is for (the username attribute).
	subject string
	// id and secret authenticate the protected resource (the mail
	// server) with HTTP Basic, as RFC 7662 section 2.1 requires.
	id, secret string
	hits       int
}

// WithSubject makes every grant one of user: introspection answers
// "username" and "sub" with it (a mail server checks it against the login
// name). Without it they are left out.
func WithSubject(user string) Option { return func(s *Server) { s.intro.subject = user } }

// route sends /introspect to the introspection endpoint and everything
// else to the token endpoint.
func (s *Server) route(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/introspect" {
		s.introspect(w, r)
		return
	}
	s.token(w, r)
}

// IntrospectionURL is the token introspection endpoint (RFC 7662) with the
// protected resource's credentials in its user information, as Dovecot's
// introspection_url takes them:
// http://ID:SECRET@127.0.0.1:PORT/introspect. It answers a form POST with
// "token" and HTTP Basic authentication: {"active":true, "username",
// "sub", "client_id", "token_type", "exp"} for an access token the server
// issued that has not expired, {"active":false} for any other.
func (s *Server) IntrospectionURL() string {
	u, _ := url.Parse(s.srv.URL + "/introspect")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ensureResource()
	u.User = url.UserPassword(s.intro.id, s.intro.secret)
	return u.String()
}

// Introspections returns how many introspection requests were answered
// (authenticated or not).
func (s *Server) Introspections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.intro.hits
}

// ExpireAccessTokens ends every access token issued so far now, as a
// provider does when the user changes the password or an administrator
// signs the user out: the store still believes its token valid, the mail
// server refuses it, and the refresh token still works.
func (s *Server) ExpireAccessTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for at, exp := range s.access {
		if exp.After(now) {
			s.access[at] = now
		}
	}
}

// ensureResource makes the protected resource's credentials; s.mu is held.
func (s *Server) ensureResource() {
	if s.intro.id == "" {
		s.intro.id, s.intro.secret = "mail-server", "resource-secret-"+random()
	}
}

func (s *Server) introspect(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.intro.hits++
	s.ensureResource()
	id, secret, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(id), []byte(s.intro.id)) != 1 ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(s.intro.secret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="introspection"`)
		answerError(w, http.StatusUnauthorized, "invalid_client", "the protected resource must authenticate")
		return
	}
	if r.Method != http.MethodPost || r.ParseForm() != nil || r.PostForm.Get("token") == "" {
		answerError(w, http.StatusBadRequest, "invalid_request", "want a form POST with token")
		return
	}
	ans := map[string]any{"active": false}
	if exp, ok := s.access[r.PostForm.Get("token")]; ok && time.Now().Before(exp) {
		ans = map[string]any{"active": true, "client_id": s.ClientID, "token_type": "Bearer", "exp": exp.Unix()}
		if s.intro.subject != "" {
			ans["username"], ans["sub"] = s.intro.subject, s.intro.subject
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(ans)
}
