package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
)

// tlsConfig is the configuration for the handshake: Options.TLSConfig,
// naming the dialled host when it names none.
func (c *Client) tlsConfig() *tls.Config {
	var cfg *tls.Config
	if c.opts.TLSConfig != nil {
		cfg = c.opts.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
		cfg.ServerName = c.host
	}
	return cfg
}

// handshake runs a TLS client handshake over the deadline connection and
// switches the session to it.
func (c *Client) handshake(ctx context.Context) error {
	tc := tls.Client(c.dc, c.tlsConfig())
	if err := tc.HandshakeContext(ctx); err != nil {
		return c.ioError(ctx, "TLS handshake", err)
	}
	st := tc.ConnectionState()
	c.tlsState = &st
	c.setTransport(tc)
	return nil
}

// startTLS upgrades the connection with STLS (RFC 2595).
func (c *Client) startTLS(ctx context.Context) error {
	caps, err := c.capabilities(ctx)
	if err != nil {
		return err
	}
	if !caps.Has("STLS") {
		return c.fail(fmt.Errorf("%w (CAPA does not list it)", ErrSTLSUnavailable))
	}
	if _, err := c.cmd(ctx, "STLS", "STLS"); err != nil {
		var pe *Error
		if errors.As(err, &pe) {
			return c.fail(fmt.Errorf("%w: %w", ErrSTLSUnavailable, err))
		}
		return err
	}
	if c.br.Buffered() > 0 {
		// Anything after the +OK was sent before TLS and must not be
		// taken as coming from inside it (command injection, CVE-2011-0411
		// style).
		return c.fail(&ProtocolError{Command: "STLS", Reason: "data received after STLS response"})
	}
	if err := c.handshake(ctx); err != nil {
		return err
	}
	c.caps, c.capsOK = nil, false
	return nil
}

// TLSConnectionState returns the TLS state, and false if the connection is
// not encrypted.
func (c *Client) TLSConnectionState() (tls.ConnectionState, bool) {
	if c.tlsState == nil {
		return tls.ConnectionState{}, false
	}
	return *c.tlsState, true
}
