package pop3

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Capabilities is a CAPA answer (RFC 2449): each capability tag, in upper
// case, mapped to its arguments. A server that does not implement CAPA has
// an empty set.
type Capabilities map[string][]string

// Has reports whether the tag (any case) is present.
func (c Capabilities) Has(tag string) bool {
	_, ok := c[strings.ToUpper(tag)]
	return ok
}

// Args returns the arguments of tag, or nil.
func (c Capabilities) Args(tag string) []string {
	return c[strings.ToUpper(tag)]
}

// SASL returns the SASL mechanisms offered, in upper case.
func (c Capabilities) SASL() []string {
	var out []string
	for _, m := range c["SASL"] {
		out = append(out, strings.ToUpper(m))
	}
	return out
}

// HasSASL reports whether the SASL mechanism (any case) is offered.
func (c Capabilities) HasSASL(mech string) bool {
	return slices.Contains(c.SASL(), strings.ToUpper(mech))
}

// LoginDelay returns the LOGIN-DELAY capability (RFC 2449 section 6.5):
// the minimum time between logins. perUser is true when the server said
// "USER", meaning the value may differ once logged in (ask again after
// Login). ok is false when the capability is absent or malformed.
func (c Capabilities) LoginDelay() (delay time.Duration, perUser bool, ok bool) {
	args, present := c["LOGIN-DELAY"]
	if !present || len(args) == 0 {
		return 0, false, false
	}
	secs, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || secs < 0 || secs > int64(time.Duration(1<<63-1)/time.Second) {
		return 0, false, false
	}
	perUser = len(args) > 1 && strings.EqualFold(args[1], "USER")
	return time.Duration(secs) * time.Second, perUser, true
}

// UTF8 reports whether the server offers the UTF8 command (RFC 6856
// section 2), and whether it lists the USER argument, which says that it
// accepts UTF-8 user names and passwords as well. A server that offers
// UTF8 may rewrite ("downgrade") messages containing raw UTF-8 for a
// session that has not sent it; see Client.UTF8.
func (c Capabilities) UTF8() (offered, user bool) {
	args, ok := c["UTF8"]
	if !ok {
		return false, false
	}
	for _, a := range args {
		if strings.EqualFold(a, "USER") {
			return true, true
		}
	}
	return true, false
}

// Capabilities returns the server's capabilities, issuing CAPA unless they
// are known for the current state. They are asked again after STLS and
// after Login, since RFC 2449 lets them change. A server that answers CAPA
// with "-ERR" yields an empty set and no error. The result is a copy.
func (c *Client) Capabilities(ctx context.Context) (Capabilities, error) {
	stop, err := c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer stop()
	caps, err := c.capabilities(ctx)
	return maps.Clone(caps), err
}

func (c *Client) capabilities(ctx context.Context) (Capabilities, error) {
	if c.capsOK {
		return c.caps, nil
	}
	_, err := c.cmd(ctx, "CAPA", "CAPA")
	var pe *Error
	if errors.As(err, &pe) {
		c.caps, c.capsOK = Capabilities{}, true
		return c.caps, nil
	}
	if err != nil {
		return nil, err
	}
	caps := Capabilities{}
	err = c.readLines(ctx, "CAPA", func(line []byte) error {
		if tag, args, ok := parseCapaLine(line); ok {
			caps[tag] = args
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.caps, c.capsOK = caps, true
	return caps, nil
}
