package pop3test

import (
	"bytes"
	"encoding/base64"
	"strings"
)

// downgrade rewrites a message with octets above 127 the way a server
// that holds raw UTF-8 mail may for a client not in UTF-8 mode (RFC 6856;
// RFC 6857 describes such downgrading): every header line with 8-bit
// octets gets its value (or, for a folded line, its text) as one RFC 2047
// encoded word, and a body with 8-bit octets is sent base64-encoded, its
// Content-Transfer-Encoding field replaced by "base64" (and MIME-Version
// added where missing). A message of 7-bit octets comes back unchanged.
func downgrade(data []byte) []byte {
	if !has8bit(data) {
		return data
	}
	header, body, hasBody := bytes.Cut(data, []byte("\r\n\r\n"))
	encodeBody := hasBody && has8bit(body)
	var out bytes.Buffer
	mimeVersion := false
	lines := strings.Split(string(header), "\r\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		name, _, isField := strings.Cut(line, ":")
		if encodeBody && isField && strings.EqualFold(strings.TrimSpace(name), "Content-Transfer-Encoding") {
			// Dropped with its folded lines; replaced below.
			for i+1 < len(lines) && (strings.HasPrefix(lines[i+1], " ") || strings.HasPrefix(lines[i+1], "\t")) {
				i++
			}
			continue
		}
		if isField && strings.EqualFold(strings.TrimSpace(name), "MIME-Version") {
			mimeVersion = true
		}
		out.WriteString(encodeLine(line))
		out.WriteString("\r\n")
	}
	if encodeBody {
		if !mimeVersion {
			out.WriteString("MIME-Version: 1.0\r\n")
		}
		out.WriteString("Content-Transfer-Encoding: base64\r\n")
	}
	if !hasBody {
		return bytes.TrimSuffix(out.Bytes(), []byte("\r\n"))
	}
	out.WriteString("\r\n")
	if !encodeBody {
		out.Write(body)
		return out.Bytes()
	}
	enc := base64.StdEncoding.EncodeToString(body)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
	out.WriteString("\r\n")
	return out.Bytes()
}

// encodeLine returns a header line with its 8-bit text as an RFC 2047
// encoded word: the value of a field, or the text of a folded line.
func encodeLine(line string) string {
	if !has8bit([]byte(line)) {
		return line
	}
	prefix, text := "", line
	if name, value, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") {
		prefix, text = name+":", value
	}
	lead := text[:len(text)-len(strings.TrimLeft(text, " \t"))]
	text = text[len(lead):]
	if lead == "" {
		lead = " "
	}
	return prefix + lead + "=?UTF-8?B?" + base64.StdEncoding.EncodeToString([]byte(text)) + "?="
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}
