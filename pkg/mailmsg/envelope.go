package mailmsg

import (
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// envelope builds the envelope from the top-level header of root.
func (b *builder) envelope(root *entity) *mailbusv1.Envelope {
	h, cs := root.header, root.charset
	env := &mailbusv1.Envelope{
		Subject:    b.text(h, "subject", cs),
		From:       b.addresses(h, "from", cs),
		Sender:     b.addresses(h, "sender", cs),
		ReplyTo:    b.addresses(h, "reply-to", cs),
		To:         b.addresses(h, "to", cs),
		Cc:         b.addresses(h, "cc", cs),
		Bcc:        b.addresses(h, "bcc", cs),
		InReplyTo:  msgIDs(headerText(h.get("in-reply-to"), cs)),
		References: msgIDs(headerText(h.get("references"), cs)),
	}
	if ids := msgIDs(headerText(h.get("message-id"), cs)); len(ids) > 0 {
		env.MessageId = ids[0]
	}
	if v := h.get("date"); v != "" {
		if t, err := parseDate(headerText(v, cs)); err != nil {
			b.errf("message: date: %v", err)
		} else {
			env.Date = timestamppb.New(t)
		}
	}
	return env
}

// text returns an unstructured field decoded to UTF-8.
func (b *builder) text(h header, name, charset string) string {
	s, err := decodeWords(headerText(h.get(name), charset))
	if err != nil {
		b.errf("message: %s: %v", name, err)
	}
	return strings.TrimSpace(s)
}

// addresses parses an address list field. A list that net/mail rejects is
// read again leniently, element by element, and the problem recorded.
func (b *builder) addresses(h header, name, charset string) []*mailbusv1.Address {
	v := strings.TrimSpace(headerText(h.get(name), charset))
	if v == "" {
		return nil
	}
	b.wordErr = nil
	if b.addrParser == nil {
		b.addrParser = &mail.AddressParser{WordDecoder: newWordDecoder(&b.wordErr)}
	}
	list, err := b.addrParser.ParseList(v)
	if err != nil {
		b.errf("message: %s: %v; read leniently", name, err)
		return b.lenientAddresses(v, name)
	}
	out := make([]*mailbusv1.Address, 0, len(list))
	for _, a := range list {
		out = append(out, &mailbusv1.Address{Name: b.name(a.Name, name), Email: a.Address})
	}
	if b.wordErr != nil {
		b.errf("message: %s: %v", name, b.wordErr)
	}
	return out
}

// name decodes encoded words that net/mail leaves alone (inside quoted
// strings, or split characters).
func (b *builder) name(n, field string) string {
	s, err := decodeWords(n)
	if err != nil {
		b.errf("message: %s: %v", field, err)
	}
	return strings.TrimSpace(s)
}

// lenientAddresses splits a list at commas outside quotes and angle
// brackets and reads each element as "name <addr>", "addr" or "name".
// Group syntax ("team: a@b, c@d;") is flattened.
func (b *builder) lenientAddresses(v, field string) []*mailbusv1.Address {
	var out []*mailbusv1.Address
	for _, el := range splitList(v) {
		el = strings.TrimSpace(el)
		if i := strings.IndexByte(el, ':'); i >= 0 && !strings.ContainsAny(el[:i], "<\"@") {
			el = strings.TrimSpace(el[i+1:]) // a group's display name
		}
		el = strings.TrimSpace(strings.TrimSuffix(el, ";"))
		if el == "" {
			continue
		}
		if a, err := mail.ParseAddress(el); err == nil {
			out = append(out, &mailbusv1.Address{Name: b.name(a.Name, field), Email: a.Address})
			continue
		}
		a := &mailbusv1.Address{}
		if lt := strings.LastIndexByte(el, '<'); lt >= 0 {
			addr := el[lt+1:]
			if gt := strings.IndexByte(addr, '>'); gt >= 0 {
				addr = addr[:gt]
			}
			a.Email = strings.TrimSpace(addr)
			a.Name = b.name(strings.Trim(strings.TrimSpace(el[:lt]), "\""), field)
		} else if strings.Contains(el, "@") && !strings.ContainsAny(el, " \t") {
			a.Email = el
		} else {
			a.Name = b.name(strings.Trim(el, "\""), field)
		}
		out = append(out, a)
	}
	return out
}

// splitList splits at commas outside quoted strings, comments and angle
// brackets.
func splitList(v string) []string {
	var (
		out          []string
		start, depth int
		inQuote      bool
		angle        bool
	)
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && inQuote:
			i++
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == '<':
			angle = true
		case c == '>':
			angle = false
		case (c == ',' || c == ';') && depth == 0 && !angle:
			out = append(out, v[start:i])
			start = i + 1
		}
	}
	return append(out, v[start:])
}

// newWordDecoder lets net/mail decode encoded words with this package's
// charsets; a charset problem keeps the bytes and is remembered in *errp,
// not fatal.
func newWordDecoder(errp *error) *mime.WordDecoder {
	return &mime.WordDecoder{CharsetReader: func(charset string, in io.Reader) (io.Reader, error) {
		b, err := io.ReadAll(in)
		if err != nil {
			return nil, err
		}
		s, err := toUTF8(charset, b)
		if err != nil && *errp == nil {
			*errp = fmt.Errorf("encoded word: %w", err)
		}
		return strings.NewReader(s), nil
	}}
}

// msgIDs returns the ids "<...>" in v without brackets; for a value without
// brackets, its white-space separated words.
func msgIDs(v string) []string {
	var ids []string
	rest := v
	for {
		lt := strings.IndexByte(rest, '<')
		if lt < 0 {
			break
		}
		gt := strings.IndexByte(rest[lt:], '>')
		if gt < 0 {
			break
		}
		if id := strings.TrimSpace(rest[lt+1 : lt+gt]); id != "" {
			ids = append(ids, id)
		}
		rest = rest[lt+gt+1:]
	}
	if len(ids) == 0 {
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
			ids = append(ids, strings.Trim(f, "<>"))
		}
	}
	return ids
}

// parseDate reads a Date field, as net/mail does or leniently.
func parseDate(v string) (time.Time, error) {
	// Tried when net/mail cannot read the date: forms seen in the wild
	// that RFC 5322 does not allow.
	dateLayouts := [...]string{
		"Mon, 2 Jan 2006 15:04:05 -0700",
		"Mon, 2 Jan 2006 15:04 -0700",
		"2 Jan 2006 15:04 -0700",
		"Mon, 2 Jan 06 15:04:05 -0700",
		"Mon, 2 Jan 2006 15:04:05",
		"2 Jan 2006 15:04:05",
		"Mon, 2 January 2006 15:04:05 -0700",
		"Mon Jan 2 15:04:05 2006",
		"Mon Jan 2 15:04:05 MST 2006",
		"Mon, 2 Jan 2006 15:04:05 MST",
		time.RFC3339,
		"2006-01-02 15:04:05 -0700",
		"2006-01-02 15:04:05",
	}
	t, err := mailParseDate(v)
	if err != nil {
		s := v
		if i := strings.IndexByte(s, '('); i > 0 {
			s = s[:i] // a trailing comment, such as "(PST)"
		}
		s = strings.Join(strings.Fields(strings.ReplaceAll(s, ",", ", ")), " ")
		s = strings.ReplaceAll(s, " ,", ",")
		for _, l := range dateLayouts {
			if t2, err2 := time.Parse(l, s); err2 == nil {
				t, err = t2, nil
				break
			}
		}
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("%q: %w", clip(v, -1), err)
	}
	t = obsoleteZone(t)
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, fmt.Errorf("%q: year %d out of range", clip(v, -1), y)
	}
	return t, nil
}

// obsoleteZone gives the US zone names of RFC 5322 section 4.3 their
// offsets: time.Parse reads a zone name that the local time zone does not
// define as UTC. A zone with an offset is left alone: it came from the
// date or from a local zone that knows the name.
func obsoleteZone(t time.Time) time.Time {
	name, off := t.Zone()
	if off != 0 {
		return t
	}
	var h int
	switch name {
	case "EST":
		h = -5
	case "EDT":
		h = -4
	case "CST":
		h = -6
	case "CDT":
		h = -5
	case "MST":
		h = -7
	case "MDT":
		h = -6
	case "PST":
		h = -8
	case "PDT":
		h = -7
	default:
		return t
	}
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(),
		time.FixedZone(name, h*3600))
}
