package discover

import (
	"fmt"
	"strings"

	"golang.org/x/net/idna"
)

// Address is an email address split for discovery.
type Address struct {
	// Email is the address as given, trimmed of surrounding space.
	Email string
	// Local is the part before the last "@".
	Local string
	// Domain is the part after it: lower case, in its ASCII (punycode)
	// form, without a trailing dot.
	Domain string
}

// AddressError is an email address discovery cannot use; it matches
// ErrInvalidAddress.
type AddressError struct {
	Email  string
	Reason string
}

// Error says what is wrong, quoting the address.
func (e *AddressError) Error() string { return fmt.Sprintf("email %q: %s", e.Email, e.Reason) }

// Is makes errors.Is(err, ErrInvalidAddress) true.
func (e *AddressError) Is(target error) bool { return target == ErrInvalidAddress }

// ParseAddress splits an email address and checks that its domain is a
// DNS name discovery can look up: at least two labels of letters, digits
// and hyphens (internationalized names are converted to punycode), not an
// address literal.
func ParseAddress(email string) (Address, error) {
	email = strings.TrimSpace(email)
	bad := func(format string, args ...any) (Address, error) {
		return Address{}, &AddressError{Email: email, Reason: fmt.Sprintf(format, args...)}
	}
	if email == "" {
		return bad("empty")
	}
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return bad("no @domain")
	}
	local, domain := email[:at], email[at+1:]
	switch {
	case local == "":
		return bad("nothing before the @")
	case len(local) > 64:
		return bad("the part before the @ is longer than 64 octets")
	case strings.ContainsFunc(local, func(r rune) bool { return r <= ' ' || r == 0x7f }):
		return bad("the part before the @ has a space or a control character")
	case domain == "":
		return bad("no domain after the @")
	case strings.HasPrefix(domain, "["):
		return bad("an address literal is not a domain discovery can look up")
	}
	ascii, err := idna.Lookup.ToASCII(strings.TrimSuffix(domain, "."))
	if err != nil {
		return bad("domain %q is not a valid DNS name", domain)
	}
	ascii = strings.ToLower(ascii)
	if reason := checkHostname(ascii); reason != "" {
		return bad("domain %q: %s", domain, reason)
	}
	if !strings.Contains(ascii, ".") {
		return bad("domain %q has a single label; discovery needs a name such as example.com", domain)
	}
	// The login is the address as given, without a trailing dot of its
	// domain (a fully qualified form no mail server knows as a login).
	return Address{Email: local + "@" + strings.TrimSuffix(domain, "."), Local: local, Domain: ascii}, nil
}

// checkHostname returns why name (ASCII, lower case, no trailing dot) is
// not a host name, or "".
func checkHostname(name string) string {
	if name == "" {
		return "empty"
	}
	if len(name) > 253 {
		return "longer than 253 octets"
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" {
			return "has an empty label"
		}
		if len(l) > 63 {
			return "has a label longer than 63 octets"
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return "has a label that starts or ends with a hyphen"
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Sprintf("has the character %q, not a letter, digit or hyphen", c)
			}
		}
	}
	tld := labels[len(labels)-1]
	if strings.Trim(tld, "0123456789") == "" {
		return "is an IP address, not a domain"
	}
	return ""
}

// hostnameOf checks a host name that a source gave (autoconfig, SRV, MX)
// and returns it lower case without a trailing dot.
func hostnameOf(name string) (string, error) {
	name = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
	if reason := checkHostname(name); reason != "" {
		return "", fmt.Errorf("host name %q %s", name, reason)
	}
	return name, nil
}
