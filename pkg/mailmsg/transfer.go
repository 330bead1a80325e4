package mailmsg

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// Problems of transfer decoding. The decoders are lenient and return what
// they could decode along with these.
var (
	errBadBase64    = errors.New("bad base64")
	errBadQP        = errors.New("bad quoted-printable")
	errUnknownCTE   = errors.New("unknown transfer encoding")
	errTruncatedB64 = errors.New("truncated base64")
)

// normCTE returns a Content-Transfer-Encoding in lower case; "7bit" when
// there is none (RFC 2045 section 6.1).
func normCTE(v string) string {
	v = strings.ToLower(strings.Trim(v, " \t\""))
	if v == "" {
		return "7bit"
	}
	return v
}

// decodeTransfer undoes a transfer encoding (already normalised). For the
// identity encodings b itself is returned. An unknown encoding is treated
// as the identity and reported.
func decodeTransfer(cte string, b []byte) ([]byte, error) {
	switch cte {
	case "7bit", "8bit", "binary":
		return b, nil
	case "base64":
		return decodeBase64(b)
	case "quoted-printable":
		return decodeQP(b)
	}
	return b, fmt.Errorf("%w %q; kept as is", errUnknownCTE, cte)
}

// b64 returns the value of a base64 digit, or -1.
func b64(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '+', c == '-':
		return 62
	case c == '/', c == '_':
		return 63
	}
	return -1
}

// decodeBase64 decodes base64 leniently: white space is skipped, other
// characters outside the alphabet are skipped and reported, padding may be
// missing, and "=" in the middle (concatenated encodings) ends a quantum.
func decodeBase64(src []byte) ([]byte, error) {
	dst := make([]byte, 0, len(src)/4*3+3)
	var (
		acc  uint32
		n    int
		err  error
		bits = func() {
			switch n {
			case 1:
				if err == nil {
					err = errTruncatedB64
				}
			case 2:
				dst = append(dst, byte(acc>>4))
			case 3:
				dst = append(dst, byte(acc>>10), byte(acc>>2))
			}
			acc, n = 0, 0
		}
	)
	for _, c := range src {
		v := b64(c)
		if v < 0 {
			switch c {
			case '=':
				bits()
			case ' ', '\t', '\r', '\n':
			default:
				if err == nil {
					err = fmt.Errorf("%w: byte %#02x", errBadBase64, c)
				}
			}
			continue
		}
		acc = acc<<6 | uint32(v)
		n++
		if n == 4 {
			dst = append(dst, byte(acc>>16), byte(acc>>8), byte(acc))
			acc, n = 0, 0
		}
	}
	bits()
	return dst, err
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10
	}
	return 0
}

// decodeQP decodes quoted-printable (RFC 2045 section 6.7) leniently:
// trailing white space is dropped, "=" at the end of a line is a soft line
// break, and an "=" not followed by two hex digits is kept as it is and
// reported. Line breaks are kept as they were (CRLF or LF).
func decodeQP(src []byte) ([]byte, error) {
	dst := make([]byte, 0, len(src))
	var err error
	for len(src) > 0 {
		var line []byte
		eol := ""
		if i := bytes.IndexByte(src, '\n'); i >= 0 {
			line, src = src[:i], src[i+1:]
			eol = "\n"
			if n := len(line); n > 0 && line[n-1] == '\r' {
				line, eol = line[:n-1], "\r\n"
			}
		} else {
			line, src = src, nil
		}
		line = bytes.TrimRight(line, " \t")
		if n := len(line); n > 0 && line[n-1] == '=' {
			line, eol = line[:n-1], ""
		}
		for i := 0; i < len(line); i++ {
			c := line[i]
			if c == '=' {
				if i+2 < len(line) && isHex(line[i+1]) && isHex(line[i+2]) {
					dst = append(dst, unhex(line[i+1])<<4|unhex(line[i+2]))
					i += 2
					continue
				}
				if err == nil {
					err = fmt.Errorf("%w: %q", errBadQP, line[i:min(i+3, len(line))])
				}
			}
			dst = append(dst, c)
		}
		dst = append(dst, eol...)
	}
	return dst, err
}
