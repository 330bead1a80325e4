package pop3

import (
	"bufio"
	"bytes"
	"io"
)

// dotReader reads the body of a multi-line response and returns it
// byte-exact: it removes the stuffed "." at the start of lines and stops at
// the CRLF "." CRLF terminator, and changes nothing else. Unlike
// net/textproto's DotReader it keeps CRLF as sent, passes bare CR and bare
// LF through, and has no line length limit.
//
// A line starts at the beginning of the body and after every CRLF. At a
// line start:
//
//	".." ...   -> "." ...  (the stuffed dot is removed)
//	"." CRLF   -> end of the body (the terminator is not returned)
//	"." other  -> other    (an unstuffed dot: removed, as RFC 1939 says)
//
// The CRLF before the terminator is part of the body.
type dotReader struct {
	r     *bufio.Reader
	state dotState
}

type dotState int

const (
	dotBeginLine dotState = iota // at the start of a line
	dotData                      // inside a line
	dotCR                        // just after a CR inside a line
	dotDot                       // after a "." at the start of a line
	dotDotCR                     // after "." CR at the start of a line
	dotEOF                       // terminator consumed
)

func (d *dotReader) Read(p []byte) (n int, err error) {
	for n < len(p) {
		if d.state == dotEOF {
			return n, io.EOF
		}
		// Hand over what we have rather than block for more.
		if n > 0 && d.r.Buffered() == 0 {
			return n, nil
		}
		switch d.state {
		case dotData:
			if _, err := d.r.Peek(1); err != nil {
				return n, unexpected(err)
			}
			buf, _ := d.r.Peek(d.r.Buffered())
			if len(buf) > len(p)-n {
				buf = buf[:len(p)-n]
			}
			if i := bytes.IndexByte(buf, '\r'); i >= 0 {
				buf = buf[:i+1]
				d.state = dotCR
			}
			n += copy(p[n:], buf)
			_, _ = d.r.Discard(len(buf))
		case dotCR:
			b, err := d.r.ReadByte()
			if err != nil {
				return n, unexpected(err)
			}
			p[n] = b
			n++
			switch b {
			case '\n':
				d.state = dotBeginLine
			case '\r':
				d.state = dotCR
			default:
				d.state = dotData
			}
		case dotBeginLine:
			b, err := d.peek()
			if err != nil {
				return n, err
			}
			if b == '.' {
				_, _ = d.r.Discard(1)
				d.state = dotDot
			} else {
				d.state = dotData
			}
		case dotDot:
			b, err := d.peek()
			if err != nil {
				return n, err
			}
			if b == '\r' {
				_, _ = d.r.Discard(1)
				d.state = dotDotCR
			} else {
				d.state = dotData // the dot was stuffing
			}
		case dotDotCR:
			b, err := d.peek()
			if err != nil {
				return n, err
			}
			if b == '\n' {
				_, _ = d.r.Discard(1)
				d.state = dotEOF
				return n, io.EOF
			}
			// "." CR other: the dot was stuffing, the CR is data and
			// the next byte is read after it.
			p[n] = '\r'
			n++
			d.state = dotCR
		}
	}
	return n, nil
}

func (d *dotReader) peek() (byte, error) {
	b, err := d.r.Peek(1)
	if err != nil {
		return 0, unexpected(err)
	}
	return b[0], nil
}

// unexpected turns io.EOF before the terminator into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
