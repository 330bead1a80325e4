package pop3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Mechanism names a way to log in.
type Mechanism string

// Mechanisms understood by Login.
const (
	// MechanismAuto chooses: with Credentials.Token set, what
	// TokenMechanism chooses; else SASL PLAIN when CAPA offers it, else
	// APOP when CAPA lists neither USER nor PLAIN but the greeting has a
	// timestamp, else USER/PASS.
	MechanismAuto Mechanism = ""
	// MechanismUser is USER and PASS (RFC 1939 section 7).
	MechanismUser Mechanism = "USER"
	// MechanismAPOP is APOP (RFC 1939 section 7); it needs a greeting
	// timestamp and the plaintext password.
	MechanismAPOP Mechanism = "APOP"
	// MechanismPlain is SASL PLAIN (RFC 4616) through AUTH (RFC 5034).
	MechanismPlain Mechanism = "PLAIN"
	// MechanismXOAUTH2 is Google's and Microsoft's SASL XOAUTH2 with an
	// OAuth 2.0 bearer token.
	MechanismXOAUTH2 Mechanism = "XOAUTH2"
	// MechanismOAuthBearer is SASL OAUTHBEARER (RFC 7628) with an OAuth
	// 2.0 bearer token.
	MechanismOAuthBearer Mechanism = "OAUTHBEARER"
)

// TokenMechanism chooses how to log in with an OAuth 2.0 access token:
// OAUTHBEARER when CAPA's SASL line offers it, else XOAUTH2 (which Login
// refuses with ErrAuthUnsupported, sending nothing, when CAPA answers
// without it). OAUTHBEARER is preferred as the standard mechanism (RFC 7628),
// the one Dovecot recommends, and the one whose failure reply (a JSON
// status followed by %x01) is specified.
func TokenMechanism(caps Capabilities) Mechanism {
	if caps.HasSASL(string(MechanismOAuthBearer)) {
		return MechanismOAuthBearer
	}
	return MechanismXOAUTH2
}

// Credentials are what Login sends.
type Credentials struct {
	Username string
	// Password for USER/PASS, APOP and PLAIN.
	Password string
	// Token is an OAuth 2.0 access token for XOAUTH2 and OAUTHBEARER.
	Token string
}

// maxAuthLine is the longest AUTH command line, CRLF included, that may
// carry an initial response (RFC 5034 section 4).
const maxAuthLine = 255

// Login authenticates with the given mechanism (MechanismAuto chooses one,
// see there) and moves the session to the TRANSACTION state.
//
// A rejection is an *Error. It matches ErrAuthFailed when it has no
// response code or the [AUTH] code: such a plain "-ERR" to USER, PASS,
// APOP or AUTH is taken as bad credentials, a permanent failure, because
// RFC 1939 servers give no other signal. [IN-USE] (maildrop locked by
// another session), [SYS/TEMP] and [LOGIN-DELAY] are temporary, [SYS/PERM]
// permanent but not an auth failure. A mechanism that CAPA does not offer
// fails with ErrAuthUnsupported before anything is sent; if the server has
// no CAPA, the mechanism is tried.
func (c *Client) Login(ctx context.Context, creds Credentials, mech Mechanism) error {
	stop, err := c.begin(ctx)
	if err != nil {
		return err
	}
	defer stop()
	if c.authed {
		return errors.New("pop3: login: already authenticated")
	}
	caps, err := c.capabilities(ctx)
	if err != nil {
		return err
	}
	if mech == MechanismAuto {
		mech = chooseMechanism(caps, creds, c.greeting)
	}
	if c.log != nil {
		c.log.Debug("pop3 login", "mechanism", string(mech), "user", creds.Username)
	}
	switch mech {
	case MechanismUser:
		err = c.userPass(ctx, creds)
	case MechanismAPOP:
		err = c.apop(ctx, creds)
	case MechanismPlain, MechanismXOAUTH2, MechanismOAuthBearer:
		if len(caps) > 0 && !caps.HasSASL(string(mech)) {
			return fmt.Errorf("%w: SASL %s (offered: %v)", ErrAuthUnsupported, mech, caps.SASL())
		}
		err = c.sasl(ctx, string(mech), initialResponse(mech, creds))
	default:
		return fmt.Errorf("%w: unknown mechanism %q", ErrAuthUnsupported, mech)
	}
	if err != nil {
		return err
	}
	c.authed = true
	c.caps, c.capsOK = nil, false
	return nil
}

func chooseMechanism(caps Capabilities, creds Credentials, g Greeting) Mechanism {
	switch {
	case creds.Token != "":
		return TokenMechanism(caps)
	case caps.HasSASL("PLAIN"):
		return MechanismPlain
	case len(caps) > 0 && !caps.Has("USER") && g.Timestamp != "":
		return MechanismAPOP
	}
	return MechanismUser
}

func initialResponse(mech Mechanism, creds Credentials) []byte {
	switch mech {
	case MechanismXOAUTH2:
		return []byte("user=" + creds.Username + "\x01auth=Bearer " + creds.Token + "\x01\x01")
	case MechanismOAuthBearer:
		return OAuthBearerResponse(creds.Username, creds.Token)
	}
	return []byte("\x00" + creds.Username + "\x00" + creds.Password)
}

// OAuthBearerResponse is the OAUTHBEARER client response of RFC 7628
// section 3.1: the GS2 header "n,a=<user>," (the user as the
// authorization identity, its "," and "=" escaped as RFC 5801 says), then
// "\x01auth=Bearer <token>\x01\x01". The optional host and port keys are
// left out: no server we know of needs them, and a proxy or a name
// resolved by DNS would make them differ from what the server knows itself
// as.
func OAuthBearerResponse(user, token string) []byte {
	user = strings.NewReplacer("=", "=3D", ",", "=2C").Replace(user)
	return []byte("n,a=" + user + ",\x01auth=Bearer " + token + "\x01\x01")
}

func (c *Client) userPass(ctx context.Context, creds Credentials) error {
	if _, err := c.cmd(ctx, "USER "+creds.Username, "USER"); err != nil {
		return err
	}
	_, err := c.cmd(ctx, "PASS "+creds.Password, "PASS")
	return err
}

func (c *Client) apop(ctx context.Context, creds Credentials) error {
	if c.greeting.Timestamp == "" {
		return ErrAPOPUnavailable
	}
	sum := md5.Sum([]byte(c.greeting.Timestamp + creds.Password))
	_, err := c.cmd(ctx, "APOP "+creds.Username+" "+hex.EncodeToString(sum[:]), "APOP")
	return err
}

// sasl runs an RFC 5034 AUTH exchange for a mechanism whose client speaks
// first (PLAIN, XOAUTH2, OAUTHBEARER). The initial response goes on the
// AUTH line when that fits in 255 octets, else after the server's empty
// challenge.
//
// XOAUTH2 and OAUTHBEARER report failure as a challenge carrying base64
// JSON ({"status":"401",...} or {"status":"invalid_token",...}). The
// client answers it, XOAUTH2 with an empty line (as Google documents),
// OAUTHBEARER with the single octet %x01 (RFC 7628 section 3.2.3), and the
// server then sends "-ERR". The JSON is added to the *Error's Message.
func (c *Client) sasl(ctx context.Context, mech string, ir []byte) error {
	display := "AUTH " + mech
	resp := base64.StdEncoding.EncodeToString(ir)
	if resp == "" {
		resp = "="
	}
	sentResponse := len(display)+1+len(resp)+2 <= maxAuthLine
	line := display
	if sentResponse {
		line += " " + resp
	}
	if err := c.send(ctx, line, display); err != nil {
		return err
	}
	var detail string
	for range 8 {
		st, err := c.readStatus(ctx, display)
		if err != nil {
			return err
		}
		switch st.kind {
		case statusOK:
			return nil
		case statusErr:
			e := st.toError(display)
			if detail != "" {
				e.Message += " (" + mech + " " + detail + ")"
			}
			return e
		}
		// A continuation ("+ challenge").
		switch {
		case !sentResponse:
			sentResponse = true
			err = c.send(ctx, resp, display)
		case mech == string(MechanismXOAUTH2) && detail == "":
			detail = decodeChallenge(st.text)
			err = c.send(ctx, "", display)
		case mech == string(MechanismOAuthBearer) && detail == "":
			detail = decodeChallenge(st.text)
			err = c.send(ctx, base64.StdEncoding.EncodeToString([]byte{0x01}), display)
		default:
			// A challenge these mechanisms do not expect: cancel, the
			// server answers -ERR.
			err = c.send(ctx, "*", display)
		}
		if err != nil {
			return err
		}
	}
	return c.fail(&ProtocolError{Command: display, Reason: "too many SASL challenges"})
}

// decodeChallenge returns a challenge's decoded text, made printable.
func decodeChallenge(text string) string {
	b, err := base64.StdEncoding.DecodeString(text)
	if err != nil {
		return "challenge " + printable([]byte(text), 200)
	}
	return printable(b, 200)
}
