package pop3fetcher_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
)

// corpusMessage is a message of the byte-exactness corpus.
type corpusMessage struct {
	name string
	data []byte
}

// corpus returns messages that a careless POP3 client or fetcher would
// change: lines starting with "." and "..", a single "." line, a line of
// 10,000 octets, 8-bit octets, raw UTF-8 (utf8Corpus), a 20 MB message and
// a message without a final line break. All use CRLF; withBareLineBreaks adds bare CR, bare LF
// and NUL octets, which a real server may rewrite.
func corpus(withBareLineBreaks bool) []corpusMessage {
	hdr := func(subject string) string {
		return "From: corpus@example.com\r\nTo: bob@example.com\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@example.com>\r\n\r\n"
	}
	var eight bytes.Buffer
	eight.WriteString(hdr("8-bit"))
	for b := 0x80; b <= 0xff; b++ {
		eight.WriteByte(byte(b))
		if b%32 == 31 {
			eight.WriteString("\r\n")
		}
	}
	eight.WriteString("Gr\xc3\xbc\xc3\x9fe, \xe6\x97\xa5\xe6\x9c\xac\r\n")
	out := []corpusMessage{
		{"dots", []byte(hdr("dots") + ".\r\n..\r\n...\r\n.x\r\n..y\r\n. \r\nend .\r\n.\r\n")},
		{"dot last line", []byte(hdr("dot last") + "body\r\n..")},
		{"long line", []byte(hdr("long line") + strings.Repeat("0123456789", 1000) + "\r\n" + "." + strings.Repeat("z", 9999) + "\r\n")},
		{"8-bit", eight.Bytes()},
		{"no final line break", []byte(hdr("no final newline") + "first line\r\nthe last line has no line break")},
		{"header only", []byte("Subject: header only\r\n\r\n")},
		{"20 MB", bigMessage(20 << 20)},
	}
	out = append(out, utf8Corpus()...)
	if withBareLineBreaks {
		out = append(out,
			corpusMessage{"bare LF", []byte("Subject: bare LF\n\nline one\nline two\r\nline three\n")},
			corpusMessage{"bare CR and NUL", []byte(hdr("bare CR") + "a\rb\r\r\nnul\x00byte\r\n\r.\r\n")},
		)
	}
	return out
}

// bigMessage is a deterministic message of about size octets: text lines
// of varying length, some starting with ".", with CRLF.
func bigMessage(size int) []byte {
	r := rand.New(rand.NewPCG(20, 26))
	var b bytes.Buffer
	b.Grow(size + 1024)
	fmt.Fprintf(&b, "From: big@example.com\r\nTo: bob@example.com\r\nSubject: big %d\r\nMessage-ID: <big%d@example.com>\r\n\r\n", size, size)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/ ."
	line := make([]byte, 0, 1000)
	for b.Len() < size {
		line = line[:0]
		if r.IntN(20) == 0 {
			line = append(line, '.')
		}
		n := 1 + r.IntN(120)
		for range n {
			line = append(line, alphabet[r.IntN(len(alphabet))])
		}
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// utf8Corpus returns internationalized messages (RFC 6532) with raw UTF-8,
// which a server may rewrite for a client not in UTF-8 mode (RFC 6856):
// UTF-8 in header fields and addresses (SMTPUTF8), in the body, in both,
// in a folded header line, in a multipart's 8-bit part, in message/global,
// 4-octet characters, right-to-left scripts, decomposed and composed
// forms of one character (a normalizing server would change one), a byte
// order mark, a UTF-8 line starting with "." and a UTF-8 line of 2,000
// octets.
func utf8Corpus() []corpusMessage {
	hdr := func(subject string) string {
		return "From: J\u00fcrgen M\u00fcller <j\u00fcrgen@b\u00fccher.example>\r\nTo: \u7530\u4e2d <\u7530\u4e2d@\u4f8b\u3048.jp>\r\nSubject: " + subject + "\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@example.com>\r\nMIME-Version: 1.0\r\n"
	}
	plain := "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
	return []corpusMessage{
		{"utf-8 header and body", []byte(hdr("Gr\u00fc\u00dfe aus K\u00f6ln") + plain + "Sch\u00f6ne Gr\u00fc\u00dfe, \u65e5\u672c\u8a9e, \u0440\u0443\u0441\u0441\u043a\u0438\u0439.\r\n")},
		{"utf-8 body only", []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: body only\r\nMessage-ID: <utf8-body@example.com>\r\nMIME-Version: 1.0\r\n" + plain + "na\u00efve caf\u00e9 \u2014 \u00bfqu\u00e9 tal?\r\n")},
		{"utf-8 header only", []byte(hdr("\u00c9t\u00e9 \u00e0 Z\u00fcrich") + "\r\nplain ASCII body\r\n")},
		{"folded utf-8 header", []byte(hdr("folded") + "X-Note: premi\u00e8re ligne\r\n\tdeuxi\u00e8me ligne \u00e7a\r\n" + plain + "ok\r\n")},
		{"multipart with an 8-bit part", []byte(hdr("multipart \u00fc") + "Content-Type: multipart/mixed; boundary=\"b\u00f6\"\r\n\r\n--b\u00f6\r\n" + plain + "Teil eins: \u00e4\u00f6\u00fc\r\n--b\u00f6\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"\u00fcbersicht.bin\"\r\n\r\nAAECAwQF\r\n--b\u00f6--\r\n")},
		{"message/global", []byte(hdr("global") + "Content-Type: message/global\r\n\r\nFrom: \u0627\u0644\u0639\u0631\u0628\u064a\u0629 <\u05e2\u05d1\u05e8\u05d9\u05ea@example.com>\r\nSubject: \U0001f4e8 \U0001f600 \U0001d11e\r\n\r\n\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627\r\n")},
		{"decomposed and composed", []byte(hdr("e\u0301 and \u00e9") + plain + "\ufeffcomposed \u00e9, decomposed e\u0301, \u212b vs \u00c5\r\n")},
		{"utf-8 dot line and long line", []byte(hdr("dots \u00fc") + plain + ".\u00fc starts with a dot\r\n..\u00e4\r\n" + strings.Repeat("\u00e4\u00f6", 500) + "\r\n")},
	}
}
