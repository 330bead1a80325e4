package pop3

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestDotReader(t *testing.T) {
	long := strings.Repeat("a", 10000)
	tests := []struct {
		name string
		wire string // body as sent, terminator included
		want string
	}{
		{"simple", "abc\r\n.\r\n", "abc\r\n"},
		{"empty body", ".\r\n", ""},
		{"empty line", "\r\n.\r\n", "\r\n"},
		{"stuffed dots", "..x\r\n...\r\n.\r\n", ".x\r\n..\r\n"},
		{"line of one dot", "..\r\n.\r\n", ".\r\n"},
		{"unstuffed dot is removed", ".x\r\n.\r\n", "x\r\n"},
		{"bare LF is not a line start", "a\n.b\r\n.\r\n", "a\n.b\r\n"},
		{"bare CR is not a line start", "a\r.b\r\n.\r\n", "a\r.b\r\n"},
		{"dot CR other", ".\rx\r\n.\r\n", "\rx\r\n"},
		{"dot CR CR LF", ".\r\r\n.\r\n", "\r\r\n"},
		{"CR CR LF then dot", "a\r\r\n..b\r\n.\r\n", "a\r\r\n.b\r\n"},
		{"dot LF", ".\n.\r\n.\r\n", "\n.\r\n"},
		{"8-bit", "\xff\xfe\x00\x80\r\n.\r\n", "\xff\xfe\x00\x80\r\n"},
		{"10000-byte line", long + "\r\n.\r\n", long + "\r\n"},
		{"long stuffed line", ".." + long + "\r\n.\r\n", "." + long + "\r\n"},
		{"terminator lookalikes", "a\r\n. \r\n.x.\r\n.\r\n", "a\r\n \r\nx.\r\n"},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 2, 3, 7, 4096} {
			got, rest, err := readDot(tt.wire+"+OK after\r\n", size, false)
			if err != nil {
				t.Fatalf("%s (read size %d): %v", tt.name, size, err)
			}
			if got != tt.want {
				t.Errorf("%s (read size %d): got %q, want %q", tt.name, size, got, tt.want)
			}
			if rest != "+OK after\r\n" {
				t.Errorf("%s (read size %d): left %q after the body", tt.name, size, rest)
			}
		}
		got, _, err := readDot(tt.wire, 5, true)
		if err != nil || got != tt.want {
			t.Errorf("%s (one-byte source): got %q, %v", tt.name, got, err)
		}
	}
}

func TestDotReaderTruncated(t *testing.T) {
	for _, wire := range []string{"", "abc", "abc\r\n", "abc\r\n.", "abc\r\n.\r", "..x\r"} {
		_, _, err := readDot(wire, 4096, false)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: got %v, want io.ErrUnexpectedEOF", wire, err)
		}
	}
}

// readDot reads wire through a dotReader with reads of size bytes and
// returns the body and what was left unread.
func readDot(wire string, size int, oneByte bool) (body, rest string, err error) {
	var src io.Reader = strings.NewReader(wire)
	if oneByte {
		src = iotest.OneByteReader(src)
	}
	br := bufio.NewReaderSize(src, 16)
	d := &dotReader{r: br}
	var out bytes.Buffer
	buf := make([]byte, size)
	for {
		n, err := d.Read(buf)
		out.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return out.String(), "", err
		}
	}
	left, _ := io.ReadAll(br)
	return out.String(), string(left), nil
}

// stuff is the server side of RFC 1939 as pop3test implements it.
func stuff(msg []byte) []byte {
	var b bytes.Buffer
	if len(msg) > 0 && msg[0] == '.' {
		b.WriteByte('.')
	}
	b.Write(bytes.ReplaceAll(msg, []byte("\r\n."), []byte("\r\n..")))
	if !bytes.HasSuffix(msg, []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	return b.Bytes()
}

// FuzzDotReader checks that any message survives stuffing and unstuffing,
// CRLF appended when it does not end in one.
func FuzzDotReader(f *testing.F) {
	for _, s := range []string{"", ".", "..", ".\r\n", "a\r\n.\r\nb", "\r\n.\r\n.", "a\r", "a\n", "\r\r\n.", ".\r.\n"} {
		f.Add([]byte(s), uint8(3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, size uint8) {
		want := string(msg)
		if !strings.HasSuffix(want, "\r\n") {
			want += "\r\n"
		}
		got, rest, err := readDot(string(stuff(msg))+"NEXT", int(size%64)+1, false)
		if err != nil {
			t.Fatal(err)
		}
		if got != want || rest != "NEXT" {
			t.Fatalf("msg %q: got %q rest %q", msg, got, rest)
		}
	})
}
