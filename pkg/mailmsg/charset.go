package mailmsg

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding"
	"golang.org/x/text/encoding/charmap"
	"golang.org/x/text/encoding/htmlindex"
	"golang.org/x/text/encoding/ianaindex"
)

// errUnknownCharset is returned (wrapped) for a charset that is not known.
var errUnknownCharset = errors.New("unknown charset")

// normCharset returns a charset label in lower case, without quotes, white
// space or an RFC 2231 language suffix ("utf-8*en").
func normCharset(name string) string {
	name = strings.Trim(name, " \t\"'")
	if i := strings.IndexByte(name, '*'); i >= 0 {
		name = name[:i]
	}
	return strings.ToLower(name)
}

// isUTF8Label reports whether a normalised label names UTF-8 or one of its
// subsets that is read as UTF-8 (US-ASCII, and no label at all).
func isUTF8Label(name string) bool {
	switch name {
	case "", "utf-8", "utf8", "us-ascii", "ascii", "ansi_x3.4-1968", "us", "iso646-us", "csascii":
		return true
	}
	return false
}

// lookupCharset finds the encoding for a normalised label that is not
// UTF-8: first in the WHATWG index, which knows the labels mail uses, then
// in the IANA index for the rest.
func lookupCharset(name string) (encoding.Encoding, error) {
	// The WHATWG "replacement" encoding (ISO-2022-KR, HZ, ...) would turn
	// the whole text into one U+FFFD: better keep the bytes.
	if e, err := htmlindex.Get(name); err == nil && e != nil && e != encoding.Replacement {
		return e, nil
	}
	if e, err := ianaindex.MIME.Encoding(name); err == nil && e != nil {
		return e, nil
	}
	if e, err := ianaindex.IANA.Encoding(name); err == nil && e != nil {
		return e, nil
	}
	return nil, fmt.Errorf("%w %q", errUnknownCharset, name)
}

// toUTF8 converts b from charset to valid UTF-8. It always returns a
// usable string: with an unknown charset, or bytes that are not valid in
// the charset, the bytes are kept (invalid UTF-8 replaced by U+FFFD) and
// the problem is returned too.
//
// Without a charset, or with US-ASCII, bytes that are not valid UTF-8 are
// read as windows-1252, the most common undeclared 8-bit charset; that is
// not reported as a problem.
func toUTF8(charset string, b []byte) (string, error) {
	name := normCharset(charset)
	if isUTF8Label(name) {
		if utf8.Valid(b) {
			return string(b), nil
		}
		if name == "utf-8" || name == "utf8" {
			return strings.ToValidUTF8(string(b), "\uFFFD"), errors.New("invalid utf-8")
		}
		return decodeWith(charmap.Windows1252, b), nil
	}
	enc, err := lookupCharset(name)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD"), err
	}
	out, err := enc.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD"), fmt.Errorf("charset %q: %w", name, err)
	}
	return strings.ToValidUTF8(string(out), "\uFFFD"), nil
}

// decodeWith decodes b with a single-byte charmap, which cannot fail.
func decodeWith(cm *charmap.Charmap, b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b) + len(b)/4)
	for _, c := range b {
		sb.WriteRune(cm.DecodeByte(c))
	}
	return sb.String()
}

// headerText returns a raw header value as valid UTF-8: unchanged when it
// is valid UTF-8 already, else read in fallback (the part's charset) or,
// failing that, windows-1252. Encoded words are not decoded here.
func headerText(v, fallback string) string {
	if utf8.ValidString(v) {
		return v
	}
	if name := normCharset(fallback); !isUTF8Label(name) {
		if s, err := toUTF8(name, []byte(v)); err == nil {
			return s
		}
	}
	return decodeWith(charmap.Windows1252, []byte(v))
}
