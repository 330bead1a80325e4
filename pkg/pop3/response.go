package pop3

import (
	"bytes"
	"strconv"
	"strings"
)

// statusKind is the kind of a status line.
type statusKind int

const (
	statusOK   statusKind = iota // "+OK ..."
	statusErr                    // "-ERR ..."
	statusCont                   // "+ base64" (SASL continuation, RFC 5034)
)

// status is a parsed status line.
type status struct {
	kind statusKind
	code string // response code in upper case, "" if none
	text string // text after the indicator and the code
}

// parseStatus parses a status line (without its line break). Indicators
// are matched case-insensitively; a response code is recognised only in
// the RFC 2449 form "[LEVEL/LEVEL...]" right after the indicator.
func parseStatus(line []byte) (status, bool) {
	switch {
	case hasPrefixFold(line, "+OK") && (len(line) == 3 || line[3] == ' ' || line[3] == '\t'):
		code, text := parseCode(line[3:])
		return status{kind: statusOK, code: code, text: text}, true
	case hasPrefixFold(line, "-ERR") && (len(line) == 4 || line[4] == ' ' || line[4] == '\t'):
		code, text := parseCode(line[4:])
		return status{kind: statusErr, code: code, text: text}, true
	case len(line) == 1 && line[0] == '+':
		return status{kind: statusCont}, true
	case len(line) >= 2 && line[0] == '+' && line[1] == ' ':
		return status{kind: statusCont, text: string(bytes.TrimSpace(line[2:]))}, true
	}
	return status{}, false
}

// parseCode splits " [CODE] text" into the code and the text.
func parseCode(rest []byte) (code, text string) {
	rest = bytes.TrimLeft(rest, " \t")
	if len(rest) > 0 && rest[0] == '[' {
		if end := bytes.IndexByte(rest, ']'); end > 1 && validCode(rest[1:end]) {
			return strings.ToUpper(string(rest[1:end])), string(bytes.TrimLeft(rest[end+1:], " \t"))
		}
	}
	return "", string(rest)
}

// validCode checks resp-code syntax: levels of printable non-space
// characters other than "/", "[" and "]", separated by "/".
func validCode(b []byte) bool {
	for _, level := range bytes.Split(b, []byte("/")) {
		if len(level) == 0 {
			return false
		}
		for _, c := range level {
			if c <= ' ' || c >= 0x7f || c == '[' || c == ']' {
				return false
			}
		}
	}
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && strings.EqualFold(string(b[:len(prefix)]), prefix)
}

// toError turns a "-ERR" status into an *Error.
func (s status) toError(cmd string) *Error {
	return &Error{Command: cmd, Code: s.code, Message: s.text}
}

// parseCapaLine parses one CAPA line into its upper-cased tag and its
// arguments. It returns ok=false for a blank line.
func parseCapaLine(line []byte) (tag string, args []string, ok bool) {
	f := strings.Fields(string(line))
	if len(f) == 0 {
		return "", nil, false
	}
	return strings.ToUpper(f[0]), f[1:], true
}

// parseNumbers parses the first n whitespace-separated fields of s as
// non-negative decimal integers. Extra fields are allowed (RFC 1939 lets
// servers add information after them).
func parseNumbers(s string, n int) ([]int64, bool) {
	f := strings.Fields(s)
	if len(f) < n {
		return nil, false
	}
	out := make([]int64, n)
	for i := range n {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil || v < 0 {
			return nil, false
		}
		out[i] = v
	}
	return out, true
}

// parseUIDLLine parses "n uid" (a UIDL line, or the text of a single UIDL
// answer). A unique-id is 1 to 70 characters in 0x21..0x7E (RFC 1939);
// longer ids are accepted, empty ones or ones with control characters are
// not.
func parseUIDLLine(s string) (UIDLEntry, bool) {
	f := strings.Fields(s)
	if len(f) < 2 {
		return UIDLEntry{}, false
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 0 {
		return UIDLEntry{}, false
	}
	for i := 0; i < len(f[1]); i++ {
		if c := f[1][i]; c < 0x21 || c == 0x7f {
			return UIDLEntry{}, false
		}
	}
	return UIDLEntry{Number: n, UID: f[1]}, true
}

// parseListLine parses "n size".
func parseListLine(s string) (ListEntry, bool) {
	v, ok := parseNumbers(s, 2)
	if !ok || v[0] == 0 || v[0] > int64(maxInt) {
		return ListEntry{}, false
	}
	return ListEntry{Number: int(v[0]), Size: v[1]}, true
}

const maxInt = int(^uint(0) >> 1)

// parseTimestamp finds the APOP timestamp, an RFC 822 msg-id such as
// "<1896.697170952@dbc.mtview.ca.us>", in the greeting text.
func parseTimestamp(text string) string {
	start := strings.IndexByte(text, '<')
	if start < 0 {
		return ""
	}
	end := strings.IndexByte(text[start:], '>')
	if end < 0 {
		return ""
	}
	ts := text[start : start+end+1]
	if !strings.Contains(ts, "@") || strings.ContainsAny(ts, " \t") {
		return ""
	}
	return ts
}
