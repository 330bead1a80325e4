package oidcserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
)

// Authorize acts as the user's browser in the authorization code flow: it
// opens authURL (the URL the client printed), logs in on the login page
// as the server's user and allows the request. It returns where the
// server redirects the browser (the client's redirect URI with code and
// state), without following it, so that the test decides how to reach
// the client.
func (s *Server) Authorize(ctx context.Context, authURL string) (*url.URL, error) {
	return s.browse(ctx, authURL, url.Values{"username": {s.User.Username}, "password": {s.User.Password}, "action": {"approve"}})
}

// Deny is Authorize with the user denying the request: the redirect
// carries error=access_denied.
func (s *Server) Deny(ctx context.Context, authURL string) (*url.URL, error) {
	return s.browse(ctx, authURL, url.Values{"action": {"deny"}})
}

func (s *Server) browse(ctx context.Context, authURL string, form url.Values) (*url.URL, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	jar, _ := cookiejar.New(nil)
	own := func(u *url.URL) bool { return u.Scheme+"://"+u.Host == s.Issuer }
	hc := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !own(req.URL) || len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	get := func(method, u string, body url.Values) (*http.Response, error) {
		var rd io.Reader
		if body != nil {
			rd = strings.NewReader(body.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u, rd)
		if err != nil {
			return nil, err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return hc.Do(req)
	}
	resp, err := get(http.MethodGet, authURL, nil)
	if err != nil {
		return nil, fmt.Errorf("oidcserver: open the authorization URL: %w", err)
	}
	page, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/login" {
		if loc, err := resp.Location(); err == nil && !own(loc) {
			return loc, nil // the server redirected at once (an error redirect)
		}
		return nil, fmt.Errorf("%w: HTTP %d at %s: %s", errPage, resp.StatusCode, resp.Request.URL.Path, page)
	}
	form.Set("authRequestID", resp.Request.URL.Query().Get("authRequestID"))
	resp, err = get(http.MethodPost, s.Issuer+"/login", form)
	if err != nil {
		return nil, fmt.Errorf("oidcserver: post the login form: %w", err)
	}
	page, _ = io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil || own(loc) {
		return nil, fmt.Errorf("%w: after login, HTTP %d at %s: %s", errPage, resp.StatusCode, resp.Request.URL.Path, page)
	}
	return loc, nil
}

// ApproveDevice acts as the user on the device verification page: enters
// userCode, logs in and allows.
func (s *Server) ApproveDevice(ctx context.Context, userCode string) error {
	return s.devicePost(ctx, url.Values{"user_code": {userCode}, "username": {s.User.Username}, "password": {s.User.Password}, "action": {"approve"}})
}

// DenyDevice denies a device authorization.
func (s *Server) DenyDevice(ctx context.Context, userCode string) error {
	return s.devicePost(ctx, url.Values{"user_code": {userCode}, "action": {"deny"}})
}

func (s *Server) devicePost(ctx context.Context, form url.Values) error {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Issuer+"/device", strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("oidcserver: post the device form: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<12))
		return fmt.Errorf("%w: device page: HTTP %d: %s", errPage, resp.StatusCode, b)
	}
	return nil
}

// Introspection is the introspection endpoint's answer (RFC 7662).
type Introspection struct {
	Active   bool   `json:"active"`
	Username string `json:"username"`
	Email    string `json:"email"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
	Exp      int64  `json:"exp"`
}

// Introspect asks the introspection endpoint about an access token, as a
// mail server does (with the resource client's credentials).
func (s *Server) Introspect(ctx context.Context, token string) (Introspection, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.IntrospectionURL, strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return Introspection{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(s.ResourceID), url.QueryEscape(s.ResourceSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return Introspection{}, fmt.Errorf("oidcserver: introspect: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return Introspection{}, fmt.Errorf("oidcserver: introspect: HTTP %d: %s", resp.StatusCode, body)
	}
	var in Introspection
	if err := json.Unmarshal(body, &in); err != nil {
		return Introspection{}, errors.Join(errors.New("oidcserver: introspect: answer not JSON"), err)
	}
	return in, nil
}
