package imapconn

import (
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// authenticate logs in with the account's method: an OAuth 2.0 access
// token with OAUTHBEARER or XOAUTH2 (TokenMechanism), SASL PLAIN when the
// server offers it, else LOGIN.
func authenticate(c *imapclient.Client, a *mailbusv1.Account, secret string) error {
	caps := c.Caps()
	var err error
	switch {
	case a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2:
		if TokenMechanism(caps) == sasl.OAuthBearer {
			err = c.Authenticate(NewOAuthBearerClient(a.Username, secret))
		} else {
			err = c.Authenticate(NewXOAuth2Client(a.Username, secret))
		}
	case caps.Has(imap.AuthCap(sasl.Plain)):
		err = c.Authenticate(sasl.NewPlainClient("", a.Username, secret))
	default:
		if caps.Has(imap.CapLoginDisabled) {
			return Permanent("the server refuses LOGIN on this connection and offers no SASL PLAIN (use TLS)", errors.New("LOGINDISABLED"))
		}
		err = c.Login(a.Username, secret).Wait()
	}
	if err == nil {
		return nil
	}
	return authError(err)
}

// authError classifies a failed LOGIN or AUTHENTICATE (decision 0018): a
// token refused in XOAUTH2's error challenge, or a NO that says the
// credentials are wrong ([AUTHENTICATIONFAILED], [AUTHORIZATIONFAILED], or
// no code at all), is permanent and parks the account (an OAuth 2.0
// account first renews its token once, see imapsync's account.connect);
// anything else ([UNAVAILABLE], [SERVERBUG], other codes, BAD, a BYE or
// a network error) is retried with backoff.
func authError(err error) error {
	var refused *TokenRefusedError
	if errors.As(err, &refused) {
		return &PermanentError{Reason: "authentication failed", Err: err, Auth: true}
	}
	var imapErr *imap.Error
	if errors.As(err, &imapErr) && imapErr.Type == imap.StatusResponseTypeNo {
		switch imapErr.Code {
		case "", imap.ResponseCodeAuthenticationFailed, imap.ResponseCodeAuthorizationFailed:
			return &PermanentError{Reason: "authentication failed", Err: err, Auth: true}
		}
	}
	return fmt.Errorf("imapconn: authenticate: %w", err)
}

// TokenMechanism chooses the SASL mechanism for an OAuth 2.0 access token
// from the server's capabilities: OAUTHBEARER (RFC 7628) when it offers
// AUTH=OAUTHBEARER, else XOAUTH2 (also when it lists neither: Gmail and
// Outlook take XOAUTH2). OAUTHBEARER is preferred as the standard
// mechanism, the one Dovecot recommends, with a specified failure reply
// (decision 0037).
func TokenMechanism(caps imap.CapSet) string {
	if caps.Has(imap.AuthCap(sasl.OAuthBearer)) {
		return sasl.OAuthBearer
	}
	return "XOAUTH2"
}

// oauthBearer is a SASL OAUTHBEARER client (RFC 7628). go-sasl has one,
// but it answers the server's error challenge with an error, which
// go-imap's Authenticate returns with the command still waiting for the
// client's response: the connection is then stuck. This one answers it
// with %x01 (section 3.2.3), so the server ends the command with NO and
// the failure is classified like any other.
type oauthBearer struct {
	user, token string
}

// NewOAuthBearerClient returns a SASL client for the OAUTHBEARER
// mechanism; user is sent as the authorization identity.
func NewOAuthBearerClient(user, token string) sasl.Client { return &oauthBearer{user, token} }

func (o *oauthBearer) Start() (string, []byte, error) {
	user := strings.NewReplacer("=", "=3D", ",", "=2C").Replace(o.user)
	return sasl.OAuthBearer, []byte("n,a=" + user + ",\x01auth=Bearer " + o.token + "\x01\x01"), nil
}

func (o *oauthBearer) Next(challenge []byte) ([]byte, error) {
	// The server's error status (JSON); the dummy response %x01 makes it
	// fail the command.
	return []byte{0x01}, nil
}

// xoauth2 is a SASL XOAUTH2 client (Google, Microsoft): the initial
// response carries the user and the bearer token; on failure the server
// sends a JSON challenge. Google's documentation has the client answer it
// with an empty line, after which the server says NO; but go-imap sends
// an empty response as "=", which Dovecot answers with BAD ("Invalid
// base64 data in continued response"), a protocol error that would be
// retried forever instead of renewing the token. So the challenge itself
// is taken as the verdict: Next returns a *TokenRefusedError, which ends
// Authenticate at once, and the connection (left in the middle of the
// command) is closed by Dial.
type xoauth2 struct {
	user, token string
}

// NewXOAuth2Client returns a SASL client for the XOAUTH2 mechanism.
func NewXOAuth2Client(user, token string) sasl.Client { return &xoauth2{user, token} }

func (x *xoauth2) Start() (string, []byte, error) {
	return "XOAUTH2", []byte("user=" + x.user + "\x01auth=Bearer " + x.token + "\x01\x01"), nil
}

func (x *xoauth2) Next(challenge []byte) ([]byte, error) {
	return nil, &TokenRefusedError{Mechanism: "XOAUTH2", Status: printableStatus(challenge)}
}

// TokenRefusedError is a server's refusal of a bearer token in XOAUTH2's
// error challenge: a credential failure (the connection is unusable after
// it and must be closed).
type TokenRefusedError struct {
	Mechanism string
	// Status is the challenge's JSON status, made printable.
	Status string
}

func (e *TokenRefusedError) Error() string {
	return e.Mechanism + ": the server refused the token: " + e.Status
}

// printableStatus returns a challenge for an error message: at most 200
// bytes, control characters and non-ASCII bytes as '?'.
func printableStatus(b []byte) string {
	b = b[:min(len(b), 200)]
	out := make([]byte, len(b))
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}
