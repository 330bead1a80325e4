package pop3test

import (
	"bytes"
	"io"
)

// writeBody writes a multi-line body: data dot-stuffed, a CRLF added if it
// does not end in one, and the terminator.
func writeBody(w io.Writer, data []byte) error {
	if err := writeStuffed(w, data); err != nil {
		return err
	}
	end := ".\r\n"
	if !bytes.HasSuffix(data, []byte("\r\n")) {
		end = "\r\n.\r\n"
	}
	_, err := io.WriteString(w, end)
	return err
}

// writeStuffed writes data with a "." added before every "." that starts a
// line (at the start of data or after CRLF).
func writeStuffed(w io.Writer, data []byte) error {
	if len(data) > 0 && data[0] == '.' {
		if _, err := io.WriteString(w, "."); err != nil {
			return err
		}
	}
	for {
		i := bytes.Index(data, []byte("\r\n."))
		if i < 0 {
			_, err := w.Write(data)
			return err
		}
		if _, err := w.Write(data[:i+2]); err != nil {
			return err
		}
		if _, err := io.WriteString(w, "."); err != nil {
			return err
		}
		data = data[i+2:]
	}
}

// top returns the header and the first n body lines of a message.
func top(data []byte, n int) []byte {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 {
		return data
	}
	pos := end + 4
	for ; n > 0 && pos < len(data); n-- {
		i := bytes.Index(data[pos:], []byte("\r\n"))
		if i < 0 {
			return data
		}
		pos += i + 2
	}
	return data[:pos]
}
