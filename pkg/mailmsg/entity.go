package mailmsg

import (
	"strconv"
	"strings"
)

// entity is one node of the MIME tree: a message or a body part.
type entity struct {
	id          string
	header      header
	mediaType   string            // lower case; the default when absent or invalid
	params      map[string]string // nil when there are none
	charset     string            // lower case, as declared
	disposition string            // "inline", "attachment" or ""
	filename    string            // decoded
	contentID   string            // without angle brackets
	cte         string            // lower case; "7bit" when absent
	body        []byte            // the encoded body, a slice of the raw message
	sections    [][]byte
	children    []*entity
}

// isMultipart reports whether e is a multipart that was split.
func (e *entity) isMultipart() bool {
	return strings.HasPrefix(e.mediaType, "multipart/")
}

// isMessage reports whether e holds an embedded message.
func (e *entity) isMessage() bool {
	return e.mediaType == "message/rfc822" || e.mediaType == "message/global"
}

// childPrefix is the prefix of the part ids of a multipart's children.
func (e *entity) childPrefix() string {
	return strings.TrimSuffix(e.id, ".TEXT")
}

// joinID appends a part number to a prefix.
func joinID(prefix string, n int) string {
	if prefix == "" {
		return strconv.Itoa(n)
	}
	return prefix + "." + strconv.Itoa(n)
}

// message parses a message (the top-level one, or one embedded in the
// message/rfc822 part with id prefix) and the tree below it.
func (b *builder) message(raw []byte, prefix string, depth int) *entity {
	e, probs := b.newEntity(raw, "text/plain", prefix == "")
	switch {
	case !e.isMultipart():
		e.id = joinID(prefix, 1)
	case prefix == "":
		e.id = ""
	default:
		e.id = prefix + ".TEXT"
	}
	if prefix == "" {
		b.record("", probs) // the top-level header is the message's
	} else {
		b.record(e.id, probs)
	}
	b.expand(e, depth)
	return e
}

// record records the problems met in the entity with the id.
func (b *builder) record(id string, probs []string) {
	for _, p := range probs {
		b.errf("%s: %s", where(id), p)
	}
}

// expand parses the children of a multipart or message entity.
func (b *builder) expand(e *entity, depth int) {
	if !e.isMultipart() && !e.isMessage() {
		return
	}
	if depth >= b.opts.MaxDepth {
		b.errf("%s: nested deeper than %d; not parsed further", where(e.id), b.opts.MaxDepth)
		return
	}
	if e.isMessage() {
		if b.parts >= b.opts.MaxParts {
			b.errf("%s: more than %d parts; not parsed further", where(e.id), b.opts.MaxParts)
			return
		}
		raw, err := decodeTransfer(e.cte, e.body)
		if err != nil {
			b.errf("%s: %v", where(e.id), err)
		}
		e.children = []*entity{b.message(raw, e.id, depth+1)}
		return
	}
	defType := "text/plain"
	if e.mediaType == "multipart/digest" {
		defType = "message/rfc822"
	}
	for i, sec := range e.sections {
		if b.parts >= b.opts.MaxParts {
			b.errf("%s: more than %d parts; not parsed further", where(e.id), b.opts.MaxParts)
			return
		}
		c, probs := b.newEntity(sec, defType, false)
		c.id = joinID(e.childPrefix(), i+1)
		b.record(c.id, probs)
		b.expand(c, depth+1)
		e.children = append(e.children, c)
	}
}

// newEntity parses the header of one entity and, for a multipart, finds
// its parts. The problems met are returned, to be recorded once the
// entity's id is known.
func (b *builder) newEntity(raw []byte, defType string, top bool) (*entity, []string) {
	b.parts++
	h, body, probs := readHeader(raw, top)
	e := &entity{header: h, body: body, mediaType: defType}
	if ct := h.get("content-type"); ct != "" {
		v, params, err := parseParams(ct)
		if err != nil {
			probs = append(probs, "content-type: "+err.Error())
		}
		if validMediaType(v) {
			e.mediaType, e.params = v, params
		} else {
			probs = append(probs, "invalid content-type "+strconv.Quote(clip(v, -1))+"; read as text/plain")
			e.mediaType = "text/plain"
		}
	}
	e.charset = strings.ToLower(strings.Trim(headerText(e.params["charset"], ""), " \t"))
	e.cte = normCTE(headerText(h.get("content-transfer-encoding"), ""))
	var dparams map[string]string
	if cd := h.get("content-disposition"); cd != "" {
		v, params, err := parseParams(cd)
		if err != nil {
			probs = append(probs, "content-disposition: "+err.Error())
		}
		dparams = params
		switch v {
		case "inline", "attachment", "":
			e.disposition = v
		default: // RFC 2183 section 2.8
			e.disposition = "attachment"
		}
	}
	name := dparams["filename"]
	if name == "" {
		name = e.params["name"]
	}
	if name != "" {
		fn, err := decodeWords(headerText(name, e.charset))
		if err != nil {
			probs = append(probs, "filename: "+err.Error())
		}
		e.filename = strings.TrimSpace(fn)
	}
	e.contentID = stripAngles(headerText(h.get("content-id"), ""))
	if e.isMultipart() {
		b.split(e, &probs)
	}
	return e, probs
}

// split finds the parts of a multipart entity. A multipart without a
// boundary, or whose boundary never occurs, is read as text/plain (the
// RFC 2046 advice for unrecognised types would make it an opaque leaf, but
// its text is more useful).
func (b *builder) split(e *entity, probs *[]string) {
	boundary := e.params["boundary"]
	if boundary == "" {
		*probs = append(*probs, e.mediaType+" without boundary; read as text/plain")
		e.mediaType = "text/plain"
		return
	}
	parts, found, closed := splitMultipart(e.body, boundary)
	switch {
	case !found:
		*probs = append(*probs, e.mediaType+": boundary not found; read as text/plain")
		e.mediaType = "text/plain"
		return
	case !closed:
		*probs = append(*probs, e.mediaType+": no closing boundary")
	}
	if len(parts) == 0 {
		*probs = append(*probs, e.mediaType+": no parts")
	}
	e.sections = parts
}

// validMediaType reports whether v looks like "type/subtype".
func validMediaType(v string) bool {
	t, sub, ok := strings.Cut(v, "/")
	return ok && isToken(t) && isToken(sub)
}

// isToken reports whether s is a non-empty RFC 2045 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("()<>@,;:\\\"/[]?=", c) >= 0 {
			return false
		}
	}
	return true
}

// stripAngles trims white space and angle brackets around an id.
func stripAngles(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimPrefix(s, "<")
	s = strings.TrimSuffix(s, ">")
	return strings.TrimSpace(s)
}
