package imapconn

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

// FuzzLiteral checks the literal reader against announced and real sizes:
// a literal larger than the limit (announced or found) is refused with
// ErrLiteralTooLarge, a literal shorter than announced (the connection
// closed in its middle) fails with io.ErrUnexpectedEOF, and what is read
// is exactly the data otherwise.
func FuzzLiteral(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nbody"), int64(16), int64(1024))
	f.Add([]byte("short"), int64(10<<30), int64(64<<20))
	f.Add([]byte(strings.Repeat("x", 100)), int64(10), int64(50))
	f.Add([]byte{}, int64(-1), int64(0))
	f.Add([]byte("Subject: cut\r\n"), int64(4096), int64(1<<20))
	f.Fuzz(func(t *testing.T, data []byte, announced, limit int64) {
		c := &Conn{timeout: time.Hour}
		g := &Guard{c: c, t: time.NewTimer(time.Hour)}
		defer g.t.Stop()
		got, err := func() ([]byte, error) {
			r, err := Literal(g, bytes.NewReader(data), announced, limit)
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		}()
		tooLarge := announced > limit || int64(len(data)) > limit
		short := int64(len(data)) < announced
		switch {
		case tooLarge && !errors.Is(err, ErrLiteralTooLarge):
			t.Fatalf("%d bytes (announced %d, limit %d): err %v, want ErrLiteralTooLarge", len(data), announced, limit, err)
		case !tooLarge && short && !errors.Is(err, io.ErrUnexpectedEOF):
			t.Fatalf("%d bytes (announced %d, limit %d): err %v, want io.ErrUnexpectedEOF", len(data), announced, limit, err)
		case !tooLarge && !short && (err != nil || !bytes.Equal(got, data)):
			t.Fatalf("%d bytes (announced %d, limit %d): got %d bytes, err %v", len(data), announced, limit, len(got), err)
		}
	})
}
