package oauthflow

import (
	"context"

	"golang.org/x/oauth2"
)

// Refresh sends one refresh_token grant with c's client credentials, as
// services/store will: it checks a refresh token obtained elsewhere (and
// the client credentials with it) before an account is given them. The
// answer's refresh token is the one to keep: a server that rotates
// refresh tokens refuses the old one from then on; a server that does not
// rotate answers without one, and the old one is returned.
func (c *Config) Refresh(ctx context.Context, refreshToken string) (Token, error) {
	if err := c.check(false, false); err != nil {
		return Token{}, err
	}
	t, err := c.oauth2Config("").TokenSource(c.httpContext(ctx), &oauth2.Token{RefreshToken: refreshToken}).Token()
	return tokenOf(t, err, "token")
}
