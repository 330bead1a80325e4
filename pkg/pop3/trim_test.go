package pop3_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

func TestTrimAddedCRLF(t *testing.T) {
	long := strings.Repeat("z", 20000)
	tests := []struct {
		body   string
		listed int64
		want   string
	}{
		{"abc\r\n", 3, "abc"},        // appended by the server
		{"abc\r\n", 5, "abc\r\n"},    // part of the message
		{"abc\r\n", 4, "abc\r\n"},    // sizes disagree otherwise: untouched
		{"\r\n", 0, ""},              // empty message
		{"a\r\r\n", 2, "a\r"},        // message ending in a bare CR
		{"abc\n\r\n", 4, "abc\n"},    // message ending in a bare LF
		{long + "\r\n", 20000, long}, // longer than the read-ahead
		{long + "\r\n", 20002, long + "\r\n"},
		{"", 0, ""},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tt.body)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			got, err := io.ReadAll(pop3.TrimAddedCRLF(r, tt.listed))
			if err != nil || string(got) != tt.want {
				t.Errorf("TrimAddedCRLF(%.20q, %d) = %.20q (%d octets), %v; want %.20q", tt.body, tt.listed, got, len(got), err, tt.want)
			}
		}
		if err := iotest.TestReader(pop3.TrimAddedCRLF(strings.NewReader(tt.body), tt.listed), []byte(tt.want)); err != nil {
			t.Errorf("TestReader(%.20q): %v", tt.body, err)
		}
	}
	_, err := io.ReadAll(pop3.TrimAddedCRLF(iotest.ErrReader(io.ErrUnexpectedEOF), 0))
	if err != io.ErrUnexpectedEOF {
		t.Errorf("error not passed on: %v", err)
	}
}

// TestStoredBytesWithExactListSizes: with a server whose LIST sizes are
// exact (pop3test, like Dovecot), every corpus message comes back exactly
// as stored, final line break or not.
func TestStoredBytesWithExactListSizes(t *testing.T) {
	cases := corpus()
	var msgs []pop3test.Message
	for _, tc := range cases {
		msgs = append(msgs, pop3test.Message{Data: tc.data})
	}
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, msgs...))
	c := login(t, srv, nil)
	list, err := c.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	err = c.RetrPipelined(context.Background(), seq(len(cases)), func(n int, r io.Reader) error {
		got, err := io.ReadAll(pop3.TrimAddedCRLF(r, list[n-1].Size))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, cases[n-1].data) {
			t.Errorf("%s: got %q", cases[n-1].name, head(got))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
