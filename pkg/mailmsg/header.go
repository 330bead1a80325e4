package mailmsg

import (
	"bytes"
	"strconv"
	"strings"
)

// field is one header field, as it stands in the raw message: the value
// is unfolded only when asked for, so that the many fields nobody reads
// (Received, DKIM-Signature, ...) cost no allocation.
type field struct {
	name  []byte // as written; ASCII
	value []byte // folded, not trimmed; raw bytes, not necessarily UTF-8
}

// header is the fields of an entity, in order.
type header []field

// get returns the value, unfolded and trimmed, of the first field with the
// lower-case name (compared without regard to case).
func (h header) get(name string) string {
	for _, f := range h {
		if len(f.name) == len(name) && asciiEqualFold(f.name, name) {
			return unfold(f.value)
		}
	}
	return ""
}

// asciiEqualFold reports whether b, ASCII, equals the lower-case s
// without regard to case.
func asciiEqualFold(b []byte, s string) bool {
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// cutLine splits off the first line of b, without its CRLF or LF.
func cutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// fieldName returns the name of a header line "name: value" and the offset
// of the value, or ok false when the line is not a field. White space
// before the colon (obsolete syntax) is allowed.
func fieldName(line []byte) (name []byte, value int, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, 0, false
	}
	n := bytes.TrimRight(line[:colon], " \t")
	if len(n) == 0 {
		return nil, 0, false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f {
			return nil, 0, false
		}
	}
	return n, colon + 1, true
}

// isContinuation reports whether line continues a folded field.
func isContinuation(line []byte) bool {
	return len(line) > 0 && (line[0] == ' ' || line[0] == '\t')
}

// readHeader splits an entity into its header and its body. It is lenient:
//   - an mbox "From " line at the very start is skipped when mbox is set;
//   - a line that is not a field is skipped when the header goes on with
//     fields up to a blank line, and otherwise ends the header and starts
//     the body;
//   - without any field at the start, the whole entity is body.
//
// The problems met are returned, not fatal.
func readHeader(raw []byte, mbox bool) (h header, body []byte, probs []string) {
	rest := raw
	if mbox && bytes.HasPrefix(rest, []byte("From ")) {
		_, rest = cutLine(rest)
	}
	// h is built as the lines are read, each value a slice of raw that a
	// continuation line extends.
	lineNo, lastEnd := 0, 0 // lastEnd: where the last field's value ends in raw
	for len(rest) > 0 {
		off := len(raw) - len(rest)
		line, next := cutLine(rest)
		end := off + len(line)
		lineNo++
		if len(bytes.TrimRight(line, "\r")) == 0 {
			return h, next, probs
		}
		if isContinuation(line) && len(h) > 0 {
			last := &h[len(h)-1]
			last.value = raw[lastEnd-len(last.value) : end]
			lastEnd = end
			rest = next
			continue
		}
		if name, v, ok := fieldName(line); ok {
			if h == nil {
				n := 4 // a body part's header is short
				if mbox {
					n = 24 // a message's (mbox is set for a message's)
				}
				h = make(header, 0, n)
			}
			h = append(h, field{name: name, value: raw[off+v : end]})
			lastEnd = end
			rest = next
			continue
		}
		if len(h) == 0 {
			probs = append(probs, "no header; read all as body")
			return nil, rest, probs
		}
		if headerGoesOn(next) {
			probs = append(probs, "header line "+strconv.Itoa(lineNo)+" is not a field; skipped")
			rest = next
			continue
		}
		probs = append(probs, "no blank line between header and body")
		return h, rest, probs
	}
	// A header without a body needs no blank line (RFC 5322 section 3.5).
	return h, nil, probs
}

// headerGoesOn reports whether b starts with fields (or continuation lines)
// up to a blank line, so that a stray line before it belongs to the header.
func headerGoesOn(b []byte) bool {
	seen := false
	for len(b) > 0 {
		line, next := cutLine(b)
		if len(bytes.TrimRight(line, "\r")) == 0 {
			return seen
		}
		if _, _, ok := fieldName(line); !ok && !(seen && isContinuation(line)) {
			return false
		}
		seen = true
		b = next
	}
	return false
}

// unfold removes the line breaks of a folded value (RFC 5322 section
// 2.2.3) and trims the white space around it.
func unfold(b []byte) string {
	if bytes.IndexByte(b, '\n') < 0 {
		return strings.Trim(string(b), " \t\r")
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for len(b) > 0 {
		var line []byte
		line, b = cutLine(b)
		sb.Write(line)
	}
	return strings.Trim(sb.String(), " \t\r")
}
