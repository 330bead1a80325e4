// Package oauthtoken renews OAuth 2.0 access tokens with the refresh_token
// grant (RFC 6749 section 6) at the token endpoints of Google, Microsoft
// or any OAuth 2.0 server.
//
// Errors carry retry intent: an error answer of the authorization server
// is an *Error with its error code; ErrInvalidGrant (the refresh token was
// revoked or has expired) is permanent and needs the user to authorize
// again. Every other failure (the endpoint unreachable, hanging, or
// answering garbage) is temporary. No error text carries the client
// secret, the refresh token or an access token.
package oauthtoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthflow"
)

// The token endpoints of the built-in providers.
const (
	GoogleTokenURL    = "https://oauth2.googleapis.com/token"
	MicrosoftTokenURL = "https://login.microsoftonline.com/common/oauth2/v2.0/token"
)

// ErrInvalidGrant is the authorization server's invalid_grant answer: the
// refresh token is revoked, expired or was issued to another client.
var ErrInvalidGrant = errors.New("the authorization server refused the refresh token (invalid_grant)")

// Error is an error answer of the token endpoint (RFC 6749 section 5.2).
type Error struct {
	// Status is the HTTP status code.
	Status int
	// Code is the error code, such as "invalid_client".
	Code string
	// Description is the server's error_description, if any.
	Description string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("token endpoint: HTTP %d: %s", e.Status, e.Code)
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// Is makes errors.Is(err, ErrInvalidGrant) true for invalid_grant.
func (e *Error) Is(target error) bool { return target == ErrInvalidGrant && e.Code == "invalid_grant" }

// TokenURL returns the token endpoint of a provider; tokenURL is the
// generic provider's. It checks that the URL is HTTPS, or HTTP to a
// loopback address (a server run by tests or on the same machine), by
// the rule the CLI's flows use (oauthflow.CheckURL).
func TokenURL(p mailbusv1.Oauth2Provider, tokenURL string) (string, error) {
	switch p {
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE:
		return GoogleTokenURL, nil
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_MICROSOFT:
		return MicrosoftTokenURL, nil
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC:
	default:
		return "", fmt.Errorf("unknown provider %d: want google, microsoft or generic", p)
	}
	if tokenURL == "" {
		return "", errors.New("required for the generic provider")
	}
	if err := oauthflow.CheckURL(tokenURL); err != nil {
		return "", err
	}
	return tokenURL, nil
}

// Request is one refresh.
type Request struct {
	// TokenURL is the token endpoint (see TokenURL).
	TokenURL string
	// ClientID and ClientSecret identify the client; the secret is empty
	// for a public client.
	ClientID, ClientSecret string
	// RefreshToken is the grant.
	RefreshToken string
	// Scopes are asked for; empty asks for those of the grant.
	Scopes []string
}

// Token is a token endpoint's answer.
type Token struct {
	// AccessToken is the new access token.
	AccessToken string
	// RefreshToken is the rotated refresh token, or empty when the server
	// keeps the old one valid.
	RefreshToken string
	// Expiry is when the access token expires; zero when the server did
	// not say.
	Expiry time.Time
}

// maxAnswer bounds the token endpoint's answer.
const maxAnswer = 1 << 20

// Refresh asks the token endpoint for a new access token. The client
// credentials go in the body (client_secret_post), which Google,
// Microsoft and most servers accept. now stamps the expiry.
func Refresh(ctx context.Context, hc *http.Client, r Request, now time.Time) (Token, error) {
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {r.RefreshToken}, "client_id": {r.ClientID}}
	if r.ClientSecret != "" {
		form.Set("client_secret", r.ClientSecret)
	}
	if len(r.Scopes) > 0 {
		form.Set("scope", strings.Join(r.Scopes, " "))
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.TokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return Token{}, fmt.Errorf("oauthtoken: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	// Redirects are not followed: Go would send the body, refresh token
	// and client secret included, again to wherever the answer points,
	// plain HTTP too. Token endpoints answer where they are asked.
	noRedirects := *hc
	noRedirects.CheckRedirect = oauthflow.NoRedirects
	resp, err := noRedirects.Do(req)
	if err != nil {
		// url.Error names the URL only, never the body.
		return Token{}, fmt.Errorf("oauthtoken: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return Token{}, fmt.Errorf("oauthtoken: read the answer of %s: %w", oauthflow.SafeURL(r.TokenURL), err)
	}
	var ans struct {
		AccessToken  string          `json:"access_token"`
		TokenType    string          `json:"token_type"`
		RefreshToken string          `json:"refresh_token"`
		ExpiresIn    json.RawMessage `json:"expires_in"`
		Error        string          `json:"error"`
		Description  string          `json:"error_description"`
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	jsonErr := json.Unmarshal(body, &ans)
	if resp.StatusCode != http.StatusOK {
		if jsonErr == nil && ans.Error != "" {
			return Token{}, fmt.Errorf("oauthtoken: %w", &Error{Status: resp.StatusCode, Code: ans.Error, Description: printable(ans.Description)})
		}
		return Token{}, fmt.Errorf("oauthtoken: %s answered HTTP %d without an OAuth error", oauthflow.SafeURL(r.TokenURL), resp.StatusCode)
	}
	if jsonErr != nil {
		return Token{}, fmt.Errorf("oauthtoken: %s answered HTTP 200 with a body that is not JSON (Content-Type %q)", oauthflow.SafeURL(r.TokenURL), ct)
	}
	if ans.AccessToken == "" {
		return Token{}, fmt.Errorf("oauthtoken: %s answered without an access_token", oauthflow.SafeURL(r.TokenURL))
	}
	if ans.TokenType != "" && !strings.EqualFold(ans.TokenType, "bearer") {
		return Token{}, fmt.Errorf("oauthtoken: %s issued a token of type %q, want Bearer", oauthflow.SafeURL(r.TokenURL), printable(ans.TokenType))
	}
	t := Token{AccessToken: ans.AccessToken, RefreshToken: ans.RefreshToken}
	if secs, ok := expiresIn(ans.ExpiresIn); ok {
		t.Expiry = now.Add(time.Duration(secs) * time.Second)
	}
	return t, nil
}

// expiresIn reads expires_in, a number of seconds (some servers send it as
// a string).
func expiresIn(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 {
		return 0, false
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		n = json.Number(s)
	}
	v, err := n.Int64()
	if err != nil || v <= 0 {
		return 0, false
	}
	return v, true
}

// printable keeps a server's text short and on one line.
func printable(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
