package mailmsg

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestOpenPart(t *testing.T) {
	tests := []struct {
		name, raw, id string
		wantID        string
		wantType      string
		want          string
	}{
		{"pdf attachment", msgMixed, "2", "2", "application/pdf", pdfBytes},
		{"inline image", msgMixed, "1.2", "1.2", "image/png", pngBytes},
		{"quoted-printable text, charset kept", msgMixed, "1.1.1", "1.1.1", "text/plain",
			"Bonjour \xe0 tous,\r\nvoici le rapport d'\xe9t\xe9.\r\n"},
		{"base64 Shift_JIS text", msgShiftJIS, "1", "1", "text/plain",
			"\x93\xfa\x96\x7b\x8c\xea\x82\xcc\x83\x65\x83\x4c\x83\x58\x83\x67"},
		{"single part", msgPlain, "1", "1", "text/plain",
			"Hi Bob,\r\n\r\nare you free for lunch on Friday?\r\n\r\nAlice\r\n"},
		{"root of a single part", msgPlain, "", "1", "text/plain",
			"Hi Bob,\r\n\r\nare you free for lunch on Friday?\r\n\r\nAlice\r\n"},
		{"attached message", msgNested, "3", "3", "message/rfc822",
			"From: Dave <dave@example.org>\nSubject: Inner two\n\nsecond inner body"},
		{"part of an attached message", msgNested, "2.2", "2.2", "text/html", "<p>inner html</p>"},
		{"multipart of an attached message", msgNested, "2.TEXT", "2.TEXT", "multipart/alternative",
			"--inner\nContent-Type: text/plain; charset=us-ascii\n\ninner text\n--inner\nContent-Type: text/html; charset=us-ascii\n\n<p>inner html</p>\n--inner--"},
		{"leaf of an attached message", msgNested, "3.1", "3.1", "text/plain", "second inner body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, part, err := OpenPart([]byte(tt.raw), tt.id)
			if err != nil {
				t.Fatalf("OpenPart(%q): %v", tt.id, err)
			}
			got, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("content = %q, want %q", got, tt.want)
			}
			if part.GetPartId() != tt.wantID || part.GetContentType() != tt.wantType {
				t.Errorf("part = %q %s, want %q %s", part.GetPartId(), part.GetContentType(), tt.wantID, tt.wantType)
			}
		})
	}
}

func TestOpenPartUnknown(t *testing.T) {
	for _, tt := range []struct{ raw, id string }{
		{msgMixed, "3"},
		{msgMixed, "0"},
		{msgMixed, "1.1.3"},
		{msgMixed, "TEXT"},
		{msgPlain, "1.1"},
		{msgPlain, "2"},
		{msgNested, "2.3"},
		{"", "x"},
	} {
		_, _, err := OpenPart([]byte(tt.raw), tt.id)
		if !errors.Is(err, ErrNoSuchPart) {
			t.Errorf("OpenPart(%q) error = %v, want ErrNoSuchPart", tt.id, err)
		}
		if err != nil && !strings.Contains(err.Error(), `"`+tt.id+`"`) {
			t.Errorf("error %q does not name the part %q", err, tt.id)
		}
	}
}

// textLF gives the text of a part as UTF-8 with LF line endings; text that
// is UTF-8 already is copied once, not twice (issue 11: a string, then a
// copy of it without the CRs, for every text part of every message
// ingested).
func TestTextLF(t *testing.T) {
	for _, tc := range []struct {
		name, charset, in, want string
		wantErr                 bool
	}{
		{"UTF-8 with CRLF", "utf-8", "héllo\r\nworld\r\n", "héllo\nworld\n", false},
		{"no label, LF only", "", "a\nb", "a\nb", false},
		{"a lone CR is kept", "us-ascii", "a\rb\r\n", "a\rb\n", false},
		{"CRLF at the start", "utf-8", "\r\n\r\nx", "\n\nx", false},
		{"Latin-1", "iso-8859-1", "caf\xe9\r\n", "café\n", false},
		{"invalid UTF-8", "utf-8", "a\xff\r\n", "a\uFFFD\n", true},
	} {
		got, err := textLF(tc.charset, []byte(tc.in))
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("%s: textLF = %q, %v; want %q (error %v)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
	body := []byte(strings.Repeat("a line of text of a message\r\n", 400))
	if n := testing.AllocsPerRun(20, func() { _, _ = textLF("utf-8", body) }); n != 1 {
		t.Errorf("textLF of %d bytes of UTF-8 with CRLF: %v allocations, want 1 (one copy)", len(body), n)
	}
}
