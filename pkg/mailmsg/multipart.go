package mailmsg

import (
	"bytes"
)

// splitMultipart splits the body of a multipart entity at its boundary
// (RFC 2046 section 5.1.1) and returns the body parts, without the line
// break before each delimiter, which belongs to the delimiter. A delimiter
// line must start with "--" and the boundary and may only be followed by
// "--" (the close delimiter) and white space; so a nested boundary that
// merely starts with this one is not mistaken for it. The preamble and
// epilogue are dropped.
//
// found is false when no delimiter line occurs at all; closed is false when
// the close delimiter is missing, in which case the last part runs to the
// end of the body.
func splitMultipart(body []byte, boundary string) (parts [][]byte, found, closed bool) {
	delim := []byte("--" + boundary)
	start := -1 // start of the current part, -1 in the preamble
	pos := 0
	for pos < len(body) {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		at := pos + i
		pos = at + len(delim)
		if at > 0 && body[at-1] != '\n' {
			continue
		}
		rest := body[pos:]
		isClose := bytes.HasPrefix(rest, []byte("--"))
		if isClose {
			rest = rest[2:]
		}
		lineEnd := bytes.IndexByte(rest, '\n')
		tail := rest
		if lineEnd >= 0 {
			tail = rest[:lineEnd]
		}
		if len(bytes.Trim(tail, " \t\r")) != 0 {
			continue
		}
		found = true
		if start >= 0 {
			end := at
			if end > start && body[end-1] == '\n' {
				end--
				if end > start && body[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, body[start:end])
		}
		if isClose {
			return parts, true, true
		}
		if lineEnd < 0 {
			// The delimiter ends the body: no part follows it.
			start = -1
			break
		}
		start = len(body) - len(rest) + lineEnd + 1
		pos = start
	}
	if start >= 0 {
		parts = append(parts, body[start:])
	}
	return parts, found, false
}
