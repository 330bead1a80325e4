package mailmsg

import (
	"bytes"
	"strings"
	"unicode/utf8"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// collector gathers the bodies and the attachments of a MIME tree.
type collector struct {
	b     *builder
	texts []bodyText // decoded text/plain bodies, in order
	htmls []bodyText // decoded text/html bodies, in order
	atts  []*mailbusv1.Attachment
}

// walk visits the tree under e. A part is inline in a multipart/related
// when it has no Content-Disposition (the resources of an HTML body).
func (c *collector) walk(e *entity, inRelated bool) {
	switch {
	case e.isMultipart():
		switch e.mediaType {
		case "multipart/alternative":
			c.alternative(e, inRelated)
		case "multipart/related":
			for _, ch := range e.children {
				c.walk(ch, true)
			}
		default: // mixed, and the rest, which read as mixed (RFC 2046)
			for _, ch := range e.children {
				c.walk(ch, inRelated)
			}
		}
	case e.isBodyText():
		if e.mediaType == "text/html" {
			c.htmls = append(c.htmls, c.decode(e))
		} else {
			c.texts = append(c.texts, c.decode(e))
		}
	default: // a leaf, or an attached message
		inline := e.disposition == "inline" || e.disposition == "" && inRelated
		c.atts = append(c.atts, e.attachment(inline))
	}
}

// alternative picks, among the alternatives of e, the last that has a
// text/plain body for the text and the last that has a text/html body for
// the HTML (RFC 2046 orders them by increasing faithfulness). Attachments
// of any alternative are kept (the images of an HTML body, an invitation),
// but another text rendering (text/enriched, say) is not an attachment.
func (c *collector) alternative(e *entity, inRelated bool) {
	var textSub, htmlSub *collector
	for _, ch := range e.children {
		s := &collector{b: c.b}
		s.walk(ch, inRelated)
		if len(s.texts) > 0 {
			textSub = s
		}
		if len(s.htmls) > 0 {
			htmlSub = s
		}
		if ch.isMultipart() || ch.isMessage() || !strings.HasPrefix(ch.mediaType, "text/") || ch.mediaType == "text/calendar" {
			c.atts = append(c.atts, s.atts...)
		}
	}
	if textSub != nil {
		c.texts = append(c.texts, textSub.texts...)
	}
	if htmlSub != nil {
		c.htmls = append(c.htmls, htmlSub.htmls...)
	}
}

// isBodyText reports whether e is text to show as the body rather than
// an attachment: text/plain or text/html that is not marked as an
// attachment and has no file name.
func (e *entity) isBodyText() bool {
	return (e.mediaType == "text/plain" || e.mediaType == "text/html") &&
		e.disposition != "attachment" && e.filename == ""
}

// bodyText is the decoded text of a body part: as a string, or, when
// Options.NoBodies spared the copy, as the valid UTF-8 it was decoded to,
// with its "\r\n" line endings still in.
type bodyText struct {
	s    string
	crlf []byte
	// lazy is set when the text is in crlf; lfLen is then its length
	// once each "\r\n" is made "\n".
	lazy  bool
	lfLen int
}

// str returns the text as a string with "\n" line endings.
func (t bodyText) str() string {
	if t.lazy {
		return withLF(t.crlf)
	}
	return t.s
}

// len is the length of str().
func (t bodyText) len() int {
	if t.lazy {
		return t.lfLen
	}
	return len(t.s)
}

// decode returns the text of a body part as UTF-8 with "\n" line endings,
// at most MaxBodyBytes of it. Only a prefix of a long part is decoded.
// With Options.NoBodies, text that is valid UTF-8 already and not too long
// is not copied: the preview needs only its start.
func (c *collector) decode(e *entity) bodyText {
	lim := c.b.opts.MaxBodyBytes
	enc, truncated := e.body, false
	if maxEnc := 4*lim + 4; len(enc) > maxEnc {
		enc, truncated = enc[:maxEnc], true
	}
	dec, err := decodeTransfer(e.cte, enc)
	if err != nil && !truncated { // a cut encoding is no problem of the message
		c.b.errf("%s: %v", where(e.id), err)
	}
	charset := e.charset
	if charset == "" && e.mediaType == "text/html" && !utf8.Valid(dec) {
		charset = sniffHTMLCharset(dec)
	}
	if c.b.opts.NoBodies && isUTF8Label(normCharset(charset)) && utf8.Valid(dec) {
		// What textLF and the truncation below would do, without the copy.
		if n := len(dec) - bytes.Count(dec, []byte("\r\n")); n <= lim {
			if truncated {
				c.b.errf("%s: text longer than %d bytes; truncated", where(e.id), lim)
			}
			return bodyText{crlf: dec, lazy: true, lfLen: n}
		}
	}
	s, err := textLF(charset, dec)
	if err != nil {
		c.b.errf("%s: %v", where(e.id), err)
	}
	if len(s) > lim {
		s, truncated = truncate(s, lim), true
	}
	if truncated {
		c.b.errf("%s: text longer than %d bytes; truncated", where(e.id), lim)
	}
	return bodyText{s: s}
}

// textLF is toUTF8 with "\r\n" line endings made "\n". Text that is
// valid UTF-8 already (most mail) is copied once, with its line endings
// changed on the way, not copied and then copied again without them.
func textLF(charset string, b []byte) (string, error) {
	if isUTF8Label(normCharset(charset)) && utf8.Valid(b) {
		return withLF(b), nil
	}
	s, err := toUTF8(charset, b)
	if strings.Contains(s, "\r") {
		s = strings.ReplaceAll(s, "\r\n", "\n")
	}
	return s, err
}

// withLF returns b as a string with each "\r\n" made "\n", in one copy.
func withLF(b []byte) string {
	crlf := []byte("\r\n")
	n := bytes.Count(b, crlf)
	if n == 0 {
		return string(b)
	}
	var sb strings.Builder
	sb.Grow(len(b) - n)
	for {
		i := bytes.Index(b, crlf)
		if i < 0 {
			sb.Write(b)
			return sb.String()
		}
		sb.Write(b[:i])
		sb.WriteByte('\n')
		b = b[i+2:]
	}
}

// joined joins the bodies of one kind, each ending a line, and keeps at
// most MaxBodyBytes.
func (c *collector) joined(parts []bodyText, kind string) string {
	switch len(parts) {
	case 0:
		return ""
	case 1:
		return parts[0].str()
	}
	var sb strings.Builder
	for _, p := range parts {
		if sb.Len() > 0 && !strings.HasSuffix(sb.String(), "\n") {
			sb.WriteByte('\n')
		}
		sb.WriteString(p.str())
	}
	s := sb.String()
	if lim := c.b.opts.MaxBodyBytes; len(s) > lim {
		c.b.errf("message: %s body longer than %d bytes; truncated", kind, lim)
		s = truncate(s, lim)
	}
	return s
}

// mayExceed reports whether joining parts could make a body longer than
// MaxBodyBytes (joined would then cut it and report it).
func (c *collector) mayExceed(parts []bodyText) bool {
	n := 0
	for _, p := range parts {
		n += p.len() + 1
	}
	return n-1 > c.b.opts.MaxBodyBytes
}

// preview is Parse's preview for Options.NoBodies: that of
// preview(joined(texts), joined(htmls)), and joined's problems, without
// making the bodies, unless one may be too long or the text has nothing
// to show.
func (c *collector) preview() string {
	n := c.b.opts.PreviewLen
	var text string
	if c.mayExceed(c.texts) {
		text = collapse(c.joined(c.texts, "text"), n)
	} else {
		var col collapser
		col.n = n
		for i, p := range c.texts {
			if i > 0 {
				col.add("\n") // joined's line break, if any, is white space
			}
			if p.lazy {
				col.addBytes(p.crlf) // a CR before LF is white space too
			} else {
				col.add(p.s)
			}
		}
		text = col.String()
	}
	var htmlBody string
	if c.mayExceed(c.htmls) || text == "" {
		htmlBody = c.joined(c.htmls, "html")
	}
	if text != "" {
		return text
	}
	return collapse(htmlText(htmlBody, 8*n+256), n)
}

// truncate cuts s to at most n bytes at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// sniffHTMLCharset finds a <meta charset=...> or http-equiv charset in the
// start of an HTML document, or returns "".
func sniffHTMLCharset(b []byte) string {
	if len(b) > 2048 {
		b = b[:2048]
	}
	i := bytes.Index(bytes.ToLower(b), []byte("charset="))
	if i < 0 {
		return ""
	}
	v := bytes.TrimLeft(b[i+len("charset="):], "\"' ")
	end := bytes.IndexAny(v, "\"'; />")
	if end < 0 {
		end = len(v)
	}
	if end > 40 {
		return ""
	}
	return string(v[:end])
}
