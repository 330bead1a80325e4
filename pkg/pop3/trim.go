package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// TrimAddedCRLF returns a reader of body (a Retr body) that drops the CRLF
// a server appended to a message that did not end in a line break, when
// that can be recognised: the body is exactly listedSize+2 octets and ends
// in CRLF, listedSize being the message's size from List or ListOne.
// Otherwise the body passes through unchanged.
//
// It relies on the server's LIST size being the exact size of the message
// as it sends it, without the CRLF it appends. Dovecot (verified with
// 2.3.19) reports sizes that way, and pop3test does too; with them the
// stored message comes back byte for byte. RFC 1939 asks for exact sizes,
// but some servers report approximations; with such a server a body whose
// size is off by exactly two octets and that ends in CRLF would lose its
// final CRLF, so use this only with servers known to report exact sizes.
//
// It reads ahead by at most a few KiB; it does not buffer the message.
func TrimAddedCRLF(body io.Reader, listedSize int64) io.Reader {
	return &crlfTrimmer{br: bufio.NewReaderSize(body, 8<<10), listed: listedSize}
}

type crlfTrimmer struct {
	br     *bufio.Reader
	listed int64
	n      int64 // octets passed on
	tail   []byte
	err    error
}

func (t *crlfTrimmer) Read(p []byte) (int, error) {
	if t.err != nil {
		return t.drainTail(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Keep two octets back until the end is known.
	want := min(len(p), t.br.Size()-2) + 2
	b, err := t.br.Peek(want)
	if err == nil {
		k := copy(p, b[:want-2])
		_, _ = t.br.Discard(k)
		t.n += int64(k)
		return k, nil
	}
	// Fewer than want octets are left before the end (or an error).
	t.tail = append([]byte(nil), b...)
	_, _ = t.br.Discard(len(b))
	t.err = err
	if errors.Is(err, io.EOF) && t.n+int64(len(t.tail)) == t.listed+2 && bytes.HasSuffix(t.tail, []byte("\r\n")) {
		t.tail = t.tail[:len(t.tail)-2]
	}
	return t.drainTail(p)
}

// drainTail passes on the octets kept back, then the final error.
func (t *crlfTrimmer) drainTail(p []byte) (int, error) {
	k := copy(p, t.tail)
	t.tail = t.tail[k:]
	t.n += int64(k)
	if len(t.tail) > 0 {
		return k, nil
	}
	return k, t.err
}
