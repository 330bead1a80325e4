package mailmsg

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// maxSections bounds the RFC 2231 continuations of one parameter.
const maxSections = 1000

// parseParams parses a header value of the form
//
//	value; name=token; name="quoted string"; name*=charset'lang'%XX; name*0*=...
//
// as used by Content-Type and Content-Disposition. The value is returned in
// lower case and the parameter names in lower case. RFC 2231 extended
// values and continuations are decoded to UTF-8; plain values are returned
// as they are (encoded words are decoded only where wanted, see param).
// It is lenient: unquoted values may contain spaces, a quoted string may
// lack its closing quote, junk between parameters is skipped. The first
// problem met is returned along with the result.
//
// params is nil when there are none.
func parseParams(s string) (value string, params map[string]string, err error) {
	v, rest, _ := strings.Cut(s, ";")
	value = strings.ToLower(strings.Trim(v, " \t\""))
	set := func(name, val string) {
		if params == nil {
			params = map[string]string{}
		}
		params[name] = val
	}
	type section struct {
		val     string
		encoded bool
	}
	var sections map[string]map[int]section // made when needed
	note := func(e error) {
		if err == nil {
			err = e
		}
	}
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t;")
		if rest == "" {
			break
		}
		eq := strings.IndexAny(rest, "=;")
		if eq < 0 || rest[eq] == ';' {
			note(fmt.Errorf("parameter without value: %q", clip(rest, eq)))
			if eq < 0 {
				break
			}
			rest = rest[eq:]
			continue
		}
		name := strings.ToLower(strings.Trim(rest[:eq], " \t"))
		rest = strings.TrimLeft(rest[eq+1:], " \t")
		var val string
		if strings.HasPrefix(rest, "\"") {
			val, rest = quoted(rest)
		} else {
			end := strings.IndexByte(rest, ';')
			if end < 0 {
				end = len(rest)
			}
			val, rest = strings.Trim(rest[:end], " \t"), rest[end:]
		}
		if name == "" {
			note(errors.New("parameter without name"))
			continue
		}
		base, sect, isSect, encoded := splitParamName(name)
		switch {
		case isSect:
			if sect >= maxSections {
				note(fmt.Errorf("parameter %q: too many continuations", base))
				continue
			}
			if sections == nil {
				sections = map[string]map[int]section{}
			}
			if sections[base] == nil {
				sections[base] = map[int]section{}
			}
			sections[base][sect] = section{val: val, encoded: encoded}
		case encoded:
			d, e := decode2231(val)
			note(e)
			set(base, d)
		default:
			if _, ok := params[base]; !ok {
				set(base, val)
			}
		}
	}
	names := make([]string, 0, len(sections))
	for n := range sections {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		secs := sections[name]
		if _, ok := secs[0]; !ok {
			note(fmt.Errorf("parameter %q: continuations without section 0", name))
			continue
		}
		var raw []byte
		charset := ""
		for i := 0; ; i++ {
			sec, ok := secs[i]
			if !ok {
				break
			}
			if !sec.encoded {
				raw = append(raw, sec.val...)
				continue
			}
			v := sec.val
			if i == 0 {
				charset, v = splitCharset(v)
			}
			raw = append(raw, unpercent(v)...)
		}
		d, e := toUTF8(charset, raw)
		if e != nil {
			note(fmt.Errorf("parameter %q: %w", name, e))
		}
		set(name, d) // an extended value wins over a plain one
	}
	return value, params, err
}

// splitParamName splits "name*2*" into "name", 2, true, true.
func splitParamName(name string) (base string, sect int, isSect, encoded bool) {
	if strings.HasSuffix(name, "*") {
		name, encoded = name[:len(name)-1], true
	}
	if i := strings.LastIndexByte(name, '*'); i >= 0 {
		if n, err := strconv.Atoi(name[i+1:]); err == nil && n >= 0 {
			return name[:i], n, true, encoded
		}
	}
	return name, 0, false, encoded
}

// splitCharset splits "charset'lang'value" into the charset and the value.
func splitCharset(v string) (charset, rest string) {
	parts := strings.SplitN(v, "'", 3)
	if len(parts) != 3 {
		return "", v
	}
	return parts[0], parts[2]
}

// decode2231 decodes an RFC 2231 extended value "charset'lang'%XX...".
func decode2231(v string) (string, error) {
	charset, v := splitCharset(v)
	s, err := toUTF8(charset, unpercent(v))
	if err != nil {
		return s, fmt.Errorf("rfc 2231 value: %w", err)
	}
	return s, nil
}

// unpercent decodes %XX escapes; a "%" not followed by two hex digits is
// kept.
func unpercent(v string) []byte {
	out := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] == '%' && i+2 < len(v) && isHex(v[i+1]) && isHex(v[i+2]) {
			out = append(out, unhex(v[i+1])<<4|unhex(v[i+2]))
			i += 2
			continue
		}
		out = append(out, v[i])
	}
	return out
}

// quoted reads the quoted string at the start of s (which starts with a
// quote) and returns its unescaped content and what follows it. A missing
// closing quote ends the string at the next ";" or the end.
func quoted(s string) (val, rest string) {
	var sb strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 < len(s) {
				i++
				sb.WriteByte(s[i])
			}
		case '"':
			return sb.String(), s[i+1:]
		default:
			sb.WriteByte(c)
		}
	}
	// No closing quote: take everything up to the next ";".
	body := s[1:]
	if j := strings.IndexByte(body, ';'); j >= 0 {
		return strings.ReplaceAll(body[:j], "\\", ""), body[j:]
	}
	return sb.String(), ""
}

// clip returns s up to n bytes (all of it for n < 0), at most 40 bytes.
func clip(s string, n int) string {
	if n < 0 || n > len(s) {
		n = len(s)
	}
	if n > 40 {
		n = 40
	}
	return strings.ToValidUTF8(s[:n], "?")
}
