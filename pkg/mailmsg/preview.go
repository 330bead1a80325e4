package mailmsg

import (
	"html"
	"strings"
	"unicode"
	"unicode/utf8"
)

// preview returns the first n runes of the text body, or of the text of the
// HTML body when the text body is blank, with white space collapsed.
func preview(text, htmlBody string, n int) string {
	if p := collapse(text, n); p != "" {
		return p
	}
	return collapse(htmlText(htmlBody, 8*n+256), n)
}

// collapse returns the first n runes of s with each run of white space
// turned into one space and none at either end.
func collapse(s string, n int) string {
	c := collapser{n: n}
	c.add(s)
	return c.String()
}

// collapser is collapse over text given in pieces.
type collapser struct {
	sb    strings.Builder
	n     int
	count int
	space bool
	done  bool
}

// add collapses s onto the text so far.
func (c *collapser) add(s string) {
	for _, r := range s {
		if c.done || !c.rune(r) {
			return
		}
	}
}

// addBytes is add for valid UTF-8 in a byte slice.
func (c *collapser) addBytes(b []byte) {
	for len(b) > 0 && !c.done {
		r, size := utf8.DecodeRune(b)
		if !c.rune(r) {
			return
		}
		b = b[size:]
	}
}

// rune collapses r onto the text; false when the text is complete.
func (c *collapser) rune(r rune) bool {
	if unicode.IsSpace(r) || r == '\u00a0' || r == '\u200b' || r == '\ufeff' {
		c.space = c.count > 0
		return true
	}
	if c.space {
		if c.count+1 >= c.n {
			c.done = true
			return false
		}
		c.sb.WriteByte(' ')
		c.count++
		c.space = false
	}
	if c.count >= c.n {
		c.done = true
		return false
	}
	c.sb.WriteRune(r)
	c.count++
	return true
}

// String returns the collapsed text.
func (c *collapser) String() string {
	return c.sb.String()
}

// htmlText extracts, crudely, the text of an HTML document: tags, comments
// and the content of head, script, style and title elements are dropped
// and character references decoded. It stops once it has about limit bytes.
func htmlText(s string, limit int) string {
	var sb strings.Builder
	for i := 0; i < len(s) && sb.Len() < limit; {
		switch c := s[i]; c {
		case '<':
			i = skipTag(s, i)
			sb.WriteByte(' ')
		case '&':
			end := strings.IndexByte(s[i:min(i+12, len(s))], ';')
			if end < 0 {
				sb.WriteByte('&')
				i++
				continue
			}
			sb.WriteString(html.UnescapeString(s[i : i+end+1]))
			i += end + 1
		default:
			_, size := utf8.DecodeRuneInString(s[i:])
			sb.WriteString(s[i : i+size])
			i += size
		}
	}
	return sb.String()
}

// skipTag returns the index after the tag, comment or element to drop that
// starts at s[i] == '<'.
func skipTag(s string, i int) int {
	if strings.HasPrefix(s[i:], "<!--") {
		if end := strings.Index(s[i+4:], "-->"); end >= 0 {
			return i + 4 + end + 3
		}
		return len(s)
	}
	end := strings.IndexByte(s[i:], '>')
	if end < 0 {
		return len(s)
	}
	tagEnd := i + end + 1
	for _, name := range [...]string{"head", "script", "style", "title"} {
		if hasTagName(s[i+1:], name) {
			if j := indexFold(s[tagEnd:], "</"+name); j >= 0 {
				if k := strings.IndexByte(s[tagEnd+j:], '>'); k >= 0 {
					return tagEnd + j + k + 1
				}
			}
			return len(s)
		}
	}
	return tagEnd
}

// hasTagName reports whether s starts with the tag name (any case)
// followed by the end of the name.
func hasTagName(s, name string) bool {
	if len(s) < len(name) || !strings.EqualFold(s[:len(name)], name) {
		return false
	}
	if len(s) == len(name) {
		return true
	}
	switch s[len(name)] {
	case '>', ' ', '\t', '\r', '\n', '/':
		return true
	}
	return false
}

// indexFold is strings.Index ignoring ASCII case, for an ASCII sub.
func indexFold(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := strings.IndexByte(s[i:], sub[0])
		if j < 0 {
			return -1
		}
		i += j
		if i+len(sub) <= len(s) && strings.EqualFold(s[i:i+len(sub)], sub) {
			return i
		}
	}
	return -1
}
