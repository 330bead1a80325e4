package oauthflow

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/oauth2"
)

// LoopbackHost is the address the browser flow listens on and redirects
// to. An IP literal, not "localhost", which may resolve to ::1 first
// while the listener is on IPv4 (RFC 8252 section 8.3).
const LoopbackHost = "127.0.0.1"

// shutdownWait bounds how long the loopback server waits for the page it
// is writing to the browser before it closes.
const shutdownWait = 5 * time.Second

// Browser runs the authorization code flow with PKCE (S256) and a loopback
// redirect. It listens on 127.0.0.1 on a free port, calls show with the
// URL the user opens in a browser, waits for the redirect (until ctx
// ends), checks its state, exchanges the code (with the PKCE verifier and
// the client credentials) and returns the tokens. The listener is closed
// before Browser returns. A redirect with another state ends the flow
// with ErrStateMismatch; an error redirect (such as access_denied) ends it
// with an *Error.
func (c *Config) Browser(ctx context.Context, show func(authURL string)) (Token, error) {
	if err := c.check(true, false); err != nil {
		return Token{}, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(LoopbackHost, "0"))
	if err != nil {
		return Token{}, fmt.Errorf("oauthflow: listen for the redirect: %w", err)
	}
	redirect := fmt.Sprintf("http://%s/", ln.Addr().String())
	lb := &loopback{state: randomString(), results: make(chan redirectResult, 1)}
	srv := &http.Server{Handler: lb, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(ln) // ErrServerClosed after Shutdown
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownWait)
		defer cancel()
		if srv.Shutdown(sctx) != nil {
			srv.Close()
		}
		<-served
	}
	defer func() {
		if stop != nil {
			stop()
		}
	}()

	conf := c.oauth2Config(redirect)
	verifier := oauth2.GenerateVerifier()
	opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier)}
	for k, vs := range c.AuthParams {
		for _, v := range vs {
			opts = append(opts, oauth2.SetAuthURLParam(k, v))
		}
	}
	show(conf.AuthCodeURL(lb.state, opts...))

	var res redirectResult
	select {
	case <-ctx.Done():
		return Token{}, fmt.Errorf("oauthflow: waiting for the browser's redirect to %s: %w", redirect, ctx.Err())
	case res = <-lb.results:
	}
	// The redirect is in: close the listener before the token request,
	// so that nothing else reaches it.
	stop()
	stop = nil
	if res.err != nil {
		return Token{}, res.err
	}
	t, err := conf.Exchange(c.httpContext(ctx), res.code, oauth2.VerifierOption(verifier))
	return tokenOf(t, err, "token")
}

// redirectResult is what the redirect brought: a code or an error.
type redirectResult struct {
	code string
	err  error
}

// loopback receives the authorization server's redirect.
type loopback struct {
	state   string
	results chan redirectResult
	once    sync.Once
}

func (l *loopback) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	q := r.URL.Query()
	if !q.Has("state") && !q.Has("code") && !q.Has("error") {
		page(w, http.StatusBadRequest, "Waiting for the authorization server", "This address receives the authorization server's redirect; open the URL that mailbus printed instead.")
		return
	}
	var res redirectResult
	switch {
	case subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(l.state)) != 1:
		res.err = ErrStateMismatch
	case q.Get("error") != "":
		res.err = &Error{Endpoint: "authorization", Code: printable(q.Get("error")), Description: printable(q.Get("error_description"))}
	case q.Get("code") == "":
		res.err = errors.New("oauthflow: the authorization server's redirect has neither a code nor an error")
	default:
		res.code = q.Get("code")
	}
	first := false
	l.once.Do(func() { first = true })
	switch {
	case !first:
		page(w, http.StatusConflict, "Already done", "mailbus already received an answer; return to the terminal.")
		return
	case res.err != nil:
		page(w, http.StatusBadRequest, "Authorization failed", res.err.Error()+". Return to the terminal.")
	default:
		page(w, http.StatusOK, "Authorization received", "mailbus received the authorization. You can close this tab and return to the terminal.")
	}
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	l.results <- res
}

func page(w http.ResponseWriter, status int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<!doctype html><title>mailbus: %s</title><h1>%s</h1><p>%s</p>\n", html.EscapeString(title), html.EscapeString(title), html.EscapeString(text))
}

// randomString is 32 random bytes, base64url: the state.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}
