// Package oauthflow obtains an OAuth 2.0 refresh token for a mail account
// the way desktop mail clients do (issue 14, decision 0039):
//
//   - Browser: the authorization code grant (RFC 6749 section 4.1) with PKCE
//     (RFC 7636, S256) and a loopback redirect (RFC 8252 section 7.3): a
//     listener on 127.0.0.1 on a free port receives the redirect, its state
//     is checked, and the code is exchanged for tokens.
//   - Device: the device authorization grant (RFC 8628): the user opens a
//     verification URL elsewhere and types a code; the token endpoint is
//     polled at the server's interval, slower after slow_down.
//   - Refresh: one refresh_token grant (RFC 6749 section 6), to check a
//     refresh token and client credentials obtained elsewhere.
//
// The client credentials are sent in the request body (client_secret_post)
// as services/store sends them when it renews the access token, so a flow
// that succeeds here proves the credentials the store will use.
//
// The protocol work is golang.org/x/oauth2's (PKCE, the device grant's
// polling); this package adds the loopback listener, the known providers,
// the endpoint checks and errors that name the OAuth error code. No error
// carries the client secret, a code or a token.
package oauthflow

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Endpoints are an authorization server's URLs.
type Endpoints struct {
	// AuthURL is the authorization endpoint (the browser flow).
	AuthURL string
	// TokenURL is the token endpoint.
	TokenURL string
	// DeviceAuthURL is the device authorization endpoint (the device
	// flow); empty when the server has none.
	DeviceAuthURL string
}

// Config is one client at one authorization server.
type Config struct {
	Endpoints
	// ClientID and ClientSecret identify the client; ClientSecret is empty
	// for a public client.
	ClientID, ClientSecret string
	// Scopes are asked for.
	Scopes []string
	// AuthParams are extra parameters of the authorization request (such
	// as Google's access_type=offline, or login_hint).
	AuthParams url.Values
	// HTTPClient sends the token requests; nil means a client with
	// HTTPTimeout.
	HTTPClient *http.Client
}

// HTTPTimeout bounds one request to the authorization server when Config
// has no HTTPClient.
const HTTPTimeout = 30 * time.Second

// Token is what a flow obtained.
type Token struct {
	// AccessToken is the access token issued with the refresh token.
	AccessToken string
	// RefreshToken is the grant the store keeps.
	RefreshToken string
	// Expiry is when AccessToken expires; zero when the server did not say.
	Expiry time.Time
}

// Error is an error answer of the authorization server: an error
// redirect of the authorization request or an error response of the
// token or device authorization endpoint (RFC 6749 sections 4.1.2.1 and
// 5.2, RFC 8628 section 3.5).
type Error struct {
	// Endpoint says which request failed: "authorization", "token" or
	// "device authorization".
	Endpoint string
	// Status is the HTTP status code (0 for a redirect).
	Status int
	// Code is the OAuth error code, such as "invalid_client"; empty when
	// the server answered without one.
	Code string
	// Description is the server's error_description, made printable.
	Description string
}

func (e *Error) Error() string {
	s := "the authorization server refused the " + e.Endpoint + " request"
	if e.Status != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.Status)
	}
	if e.Code != "" {
		s += ": " + e.Code
	} else {
		s += " without an OAuth error code"
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// ClientRefused reports whether the server refused the client's
// credentials (a wrong client id or secret).
func (e *Error) ClientRefused() bool {
	return e.Code == "invalid_client" || e.Code == "unauthorized_client"
}

// ErrStateMismatch: the redirect to the loopback listener carried another
// state than the authorization request (a forged or stale redirect).
var ErrStateMismatch = errors.New("the redirect's state does not match the authorization request (a forged or stale redirect): start again")

// ErrNoRefreshToken: the server issued tokens without a refresh token.
var ErrNoRefreshToken = errors.New("the authorization server issued no refresh token (Google needs access_type=offline and prompt=consent, Microsoft the offline_access scope; a generic server may need a scope such as offline_access)")

// CheckURL checks an endpoint URL: absolute, and HTTPS or plain HTTP to a
// loopback address (a server on the same machine or run by tests), the
// rule services/store applies to token URLs.
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q is not an absolute http(s) URL", SafeURL(raw))
	}
	if u.User != nil {
		return fmt.Errorf("%q carries user information: give the client credentials as such", SafeURL(raw))
	}
	if u.Scheme == "http" && !Loopback(u.Hostname()) {
		return fmt.Errorf("%q is not HTTPS (plain HTTP only to a loopback address)", SafeURL(raw))
	}
	return nil
}

// SafeURL is a URL for messages and logs: without user information,
// query and fragment, where secrets could be.
func SafeURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a malformed URL)"
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}

// NoRedirects is an http.Client's CheckRedirect that follows no redirect:
// the client gets the 3xx answer itself. Token endpoints answer where they
// are asked, and Go would otherwise send a token request's form (refresh
// token, code, PKCE verifier, client secret) again to the redirect's
// target, plain HTTP too.
func NoRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Loopback reports whether host names this machine: localhost or a
// loopback address.
func Loopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// oauth2Config is the x/oauth2 view of c; redirect is the redirect URI
// (empty outside the browser flow).
func (c *Config) oauth2Config(redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: c.ClientID, ClientSecret: c.ClientSecret, Scopes: c.Scopes, RedirectURL: redirect,
		Endpoint: oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, DeviceAuthURL: c.DeviceAuthURL,
			AuthStyle: oauth2.AuthStyleInParams},
	}
}

// httpContext makes x/oauth2 send its requests with c's client.
func (c *Config) httpContext(ctx context.Context) context.Context {
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: HTTPTimeout, CheckRedirect: NoRedirects}
	}
	return context.WithValue(ctx, oauth2.HTTPClient, hc)
}

// check refuses a Config that cannot work: no client id, an endpoint that
// is missing or not HTTPS.
func (c *Config) check(needAuth, needDevice bool) error {
	if c.ClientID == "" {
		return errors.New("oauthflow: no client id")
	}
	for _, e := range []struct {
		name, url string
		need      bool
	}{{"authorization URL", c.AuthURL, needAuth}, {"token URL", c.TokenURL, true}, {"device authorization URL", c.DeviceAuthURL, needDevice}} {
		if !e.need {
			continue
		}
		if e.url == "" {
			return fmt.Errorf("oauthflow: no %s", e.name)
		}
		if err := CheckURL(e.url); err != nil {
			return fmt.Errorf("oauthflow: %s: %w", e.name, err)
		}
	}
	return nil
}

// tokenOf turns x/oauth2's answer into a Token, or its error into an
// *Error (never x/oauth2's text, which carries the response body).
func tokenOf(t *oauth2.Token, err error, endpoint string) (Token, error) {
	if err != nil {
		return Token{}, answerError(err, endpoint)
	}
	if t.RefreshToken == "" {
		return Token{}, ErrNoRefreshToken
	}
	return Token{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, Expiry: t.Expiry}, nil
}

func answerError(err error, endpoint string) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		e := &Error{Endpoint: endpoint, Code: printable(re.ErrorCode), Description: printable(re.ErrorDescription)}
		if re.Response != nil {
			e.Status = re.Response.StatusCode
		}
		return e
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// url.Error names the method and URL, never the body.
		return fmt.Errorf("oauthflow: %s request: %w", endpoint, err)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("oauthflow: %s request: %w", endpoint, err)
	}
	// x/oauth2's other errors are about the answer's form ("server
	// response missing access_token"), without its body.
	return fmt.Errorf("oauthflow: %s request: %v", endpoint, err)
}

// printable keeps a server's text to one printable line of at most 300
// characters.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
