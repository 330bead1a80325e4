// Package accountfield checks the fields of an upstream account that go on
// the wire to a mail server or onto an operator's terminal: the host, the
// username and the account's name. The store refuses an account that fails
// them (INVALID_ARGUMENT naming the field); the fetchers check an account
// read from the store again before they connect, since a database may hold
// values stored before these rules, and park such an account with the
// reason instead of retrying it forever.
//
// The rules:
//   - No control character (C0, U+0000 to U+001F, or DEL, U+007F) in the
//     host, the username or the name: a CR LF in a username would end the
//     POP3 USER command early and start another ("victim\r\nDELE 1").
//   - The host is an IP address or a host name in ASCII: labels of letters,
//     digits, '-' and '_' of at most 63 bytes, not starting or ending with
//     '-', the last not all digits ("127.1" is no host name, and resolvers
//     disagree on the address it is), at most 253 bytes in all, an
//     optional final dot. An internationalised name goes in its xn-- form.
//     An IPv6 address's zone has no space, '/' or '%'.
//   - The name is not all digits: the command-line client takes an account
//     by id or by name, and an all-digit name would read as an id.
package accountfield

import (
	"fmt"
	"net/netip"
	"strings"
)

// Error is a field that fails its rule.
type Error struct {
	// Field is the account's field as the API names it: "host",
	// "username" or "name".
	Field string
	// Reason says what is wrong, in words fit for an error message.
	Reason string
}

func (e *Error) Error() string { return "account." + e.Field + ": " + e.Reason }

// MaxHostLen is the longest host name, in bytes (RFC 1035 section 2.3.4,
// without the final dot).
const MaxHostLen = 253

// controlChar returns the first control character in s and its byte
// offset, or ok=false when s has none.
func controlChar(s string) (c byte, at int, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return s[i], i, true
		}
	}
	return 0, 0, false
}

// CheckText refuses a value with a control character (C0 or DEL).
func CheckText(field, s string) error {
	if c, at, ok := controlChar(s); ok {
		return &Error{Field: field, Reason: fmt.Sprintf("contains the control character 0x%02X at byte %d", c, at)}
	}
	return nil
}

// CheckHost refuses a host that is neither an IP address nor a host name.
func CheckHost(host string) error {
	if err := CheckText("host", host); err != nil {
		return err
	}
	if host == "" {
		return &Error{Field: "host", Reason: "required"}
	}
	if addr, err := netip.ParseAddr(host); err == nil {
		if z := addr.Zone(); strings.ContainsAny(z, " /%") {
			return &Error{Field: "host", Reason: fmt.Sprintf("%q has an IPv6 zone %q that is not an interface name", host, z)}
		}
		return nil
	}
	if reason := hostNameProblem(host); reason != "" {
		return &Error{Field: "host", Reason: fmt.Sprintf("%q is not a host name or an IP address: %s", host, reason)}
	}
	return nil
}

// hostNameProblem says why name is not a host name, or "" when it is one.
func hostNameProblem(name string) string {
	name = strings.TrimSuffix(name, ".")
	if name == "" {
		return "no label"
	}
	if len(name) > MaxHostLen {
		return fmt.Sprintf("longer than %d bytes", MaxHostLen)
	}
	labels := strings.Split(name, ".")
	if last := labels[len(labels)-1]; last != "" && strings.Trim(last, "0123456789") == "" {
		// RFC 1123 section 2.1: a host name's last label is not all
		// digits. "127.1" or "010.0.0.1" is an IP address that resolvers
		// read differently (as 127.0.0.1, or 8.0.0.1 in octal), or not at
		// all.
		return "its last label is all digits, yet it is not an IP address (write one in full, as 192.0.2.1)"
	}
	for _, label := range labels {
		switch {
		case label == "":
			return "an empty label"
		case len(label) > 63:
			return "a label longer than 63 bytes"
		case label[0] == '-' || label[len(label)-1] == '-':
			return "a label starts or ends with '-'"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 0x80:
				return "not ASCII (write an internationalised name in its xn-- form)"
			default:
				return fmt.Sprintf("the character %q", c)
			}
		}
	}
	return ""
}

// CheckName refuses an account name with a control character or of
// digits only.
func CheckName(name string) error {
	if err := CheckText("name", name); err != nil {
		return err
	}
	if name != "" && strings.Trim(name, "0123456789") == "" {
		return &Error{Field: "name", Reason: "is all digits, which reads as an account id: add a letter"}
	}
	return nil
}

// CheckConnect checks what a fetcher sends to the server: the host and the
// username. A fetcher parks an account that fails it.
func CheckConnect(host, username string) error {
	if err := CheckHost(host); err != nil {
		return err
	}
	return CheckText("username", username)
}
