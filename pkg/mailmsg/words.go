package mailmsg

import (
	"fmt"
	"strings"
)

// maxWordLen bounds how far an encoded word is looked for. RFC 2047 allows
// 75 characters; senders exceed that, but not by this much.
const maxWordLen = 1000

// decodeWords decodes the RFC 2047 encoded words in s. It is lenient:
// encoded words may stand inside other text or quoted strings, B text may
// lack padding, and the bytes of adjacent words in the same charset are
// joined before conversion, so that a character split across two words
// survives. Something that is not a well-formed encoded word is kept as
// it is. The first problem met is returned along with the text.
func decodeWords(s string) (string, error) {
	if !strings.Contains(s, "=?") {
		return s, nil
	}
	var (
		out      strings.Builder
		pend     []byte // bytes of the current run of words in one charset
		pendCS   string
		firstErr error
		i        int
		after    bool // the last thing read was an encoded word
	)
	note := func(err error) {
		if err != nil && firstErr == nil {
			firstErr = err
		}
	}
	flush := func() {
		if pend == nil {
			return
		}
		t, err := toUTF8(pendCS, pend)
		note(err)
		out.WriteString(t)
		pend = nil
	}
	for {
		j := strings.Index(s[i:], "=?")
		if j < 0 {
			break
		}
		start := i + j
		cs, enc, text, end, ok := parseWord(s, start)
		if !ok {
			flush()
			out.WriteString(s[i : start+2])
			i, after = start+2, false
			continue
		}
		if between := s[i:start]; !after || strings.Trim(between, " \t") != "" {
			flush()
			out.WriteString(between)
		}
		content, err := decodeWordText(enc, text)
		if err != nil {
			note(fmt.Errorf("encoded word: %w", err))
		}
		if cs = normCharset(cs); pend != nil && cs != pendCS {
			flush()
		}
		pendCS = cs
		pend = append(pend, content...)
		i, after = end, true
	}
	flush()
	out.WriteString(s[i:])
	return out.String(), firstErr
}

// parseWord parses the encoded word "=?charset?enc?text?=" at s[start:].
func parseWord(s string, start int) (charset string, enc byte, text string, end int, ok bool) {
	w := s[start+2:]
	if len(w) > maxWordLen {
		w = w[:maxWordLen]
	}
	q := strings.IndexByte(w, '?')
	if q <= 0 || strings.ContainsAny(w[:q], " \t\"") {
		return "", 0, "", 0, false
	}
	charset, w = w[:q], w[q+1:]
	if len(w) < 2 || w[1] != '?' {
		return "", 0, "", 0, false
	}
	enc = w[0] | 0x20 // lower case
	if enc != 'b' && enc != 'q' {
		return "", 0, "", 0, false
	}
	w = w[2:]
	e := strings.Index(w, "?=")
	if e < 0 {
		return "", 0, "", 0, false
	}
	text = w[:e]
	end = start + 2 + q + 1 + 2 + e + 2
	return charset, enc, text, end, true
}

// decodeWordText decodes the text of an encoded word.
func decodeWordText(enc byte, text string) ([]byte, error) {
	if enc == 'b' {
		return decodeBase64([]byte(text))
	}
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		switch c := text[i]; {
		case c == '_':
			out = append(out, ' ')
		case c == '=' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]):
			out = append(out, unhex(text[i+1])<<4|unhex(text[i+2]))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out, nil
}
