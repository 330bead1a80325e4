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
// 10,000 octets, 8-bit octets, a 20 MB message and a message without a
// final line break. All use CRLF; withBareLineBreaks adds bare CR, bare LF
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
