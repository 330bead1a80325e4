package oauthflow

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// DeviceCode is what the user needs for the device flow.
type DeviceCode struct {
	// VerificationURI is where the user goes.
	VerificationURI string
	// VerificationURIComplete is VerificationURI with the user code in it,
	// when the server gives one.
	VerificationURIComplete string
	// UserCode is what the user types there.
	UserCode string
	// Expiry is when the codes expire; zero when the server did not say.
	Expiry time.Time
	// Interval is how often the token endpoint is polled (5 s when the
	// server did not say); slow_down adds 5 s for the rest of the flow.
	Interval time.Duration
}

// ErrNoDevice: the server has no device authorization endpoint.
var ErrNoDevice = errors.New("oauthflow: the authorization server has no device authorization endpoint")

// Device runs the device authorization grant (RFC 8628): it asks the
// device authorization endpoint for a code, calls show with what the user
// needs, and polls the token endpoint at the server's interval (5 s more
// for the rest of the flow after each slow_down) until the user approved
// (the tokens), denied (an *Error with code access_denied), the code
// expired (expired_token) or ctx ended.
func (c *Config) Device(ctx context.Context, show func(DeviceCode)) (Token, error) {
	if c.DeviceAuthURL == "" {
		return Token{}, ErrNoDevice
	}
	if err := c.check(false, true); err != nil {
		return Token{}, err
	}
	conf := c.oauth2Config("")
	hctx := c.httpContext(ctx)
	var opts []oauth2.AuthCodeOption
	if c.ClientSecret != "" {
		// RFC 8628 section 3.1: a confidential client authenticates as at
		// the token endpoint (client_secret_post here).
		opts = append(opts, oauth2.SetAuthURLParam("client_secret", c.ClientSecret))
	}
	da, err := conf.DeviceAuth(hctx, opts...)
	if err != nil {
		return Token{}, answerError(err, "device authorization")
	}
	if da.DeviceCode == "" || da.UserCode == "" || da.VerificationURI == "" {
		return Token{}, fmt.Errorf("oauthflow: the device authorization endpoint answered without a device code, user code or verification URI")
	}
	interval := time.Duration(da.Interval) * time.Second
	if interval <= 0 {
		interval = 5 * time.Second
	}
	show(DeviceCode{VerificationURI: printable(da.VerificationURI), VerificationURIComplete: printable(da.VerificationURIComplete),
		UserCode: printable(da.UserCode), Expiry: da.Expiry, Interval: interval})
	// x/oauth2 polls every interval, adds 5 s on slow_down, and ends on
	// access_denied, expired_token, the codes' expiry or ctx.
	t, err := conf.DeviceAccessToken(hctx, da)
	if err != nil && ctx.Err() == nil && !da.Expiry.IsZero() && time.Now().After(da.Expiry) {
		return Token{}, &Error{Endpoint: "token", Code: "expired_token", Description: "the user code expired before the user approved"}
	}
	return tokenOf(t, err, "token")
}
