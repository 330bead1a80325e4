package pop3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// corpus is the byte-exactness corpus. Every message must come back as
// stored, with a CRLF added when it does not end in one (see the package
// documentation).
func corpus() []struct {
	name string
	data []byte
} {
	var all bytes.Buffer
	all.WriteString("Subject: every octet\r\n\r\n")
	for i := range 256 {
		all.WriteByte(byte(i)) // includes bare CR (13) and bare LF (10)
	}
	all.WriteString("\r\n")
	for i := range 256 {
		fmt.Fprintf(&all, "%c line starting with octet %d\r\n", byte(i), i)
	}
	return []struct {
		name string
		data []byte
	}{
		{"plain", []byte("Subject: hi\r\n\r\nhello\r\n")},
		{"dot lines", []byte("Subject: dots\r\n\r\n.\r\n..\r\n...\r\n.hidden\r\n. \r\n.\r\nend\r\n")},
		{"starts with dot", []byte(".first line is a dot line\r\nsecond\r\n")},
		{"terminator inside", []byte("a\r\n.\r\nb\r\n")},
		{"ends with dot line", []byte("a\r\n.")},
		{"10000-byte line", []byte("Subject: long\r\n\r\n" + strings.Repeat("x", 10000) + "\r\n")},
		{"100000-byte dot line", []byte("." + strings.Repeat("y", 100000) + "\r\n")},
		{"every octet", all.Bytes()},
		{"utf-8 and latin-1", []byte("Subject: =?utf-8?q?x?=\r\n\r\nGrüße, こんにちは, caf\xe9\r\n")},
		{"no final newline", []byte("Subject: x\r\n\r\nno newline at the end")},
		{"ends with bare LF", []byte("Subject: x\r\n\r\nunix\n")},
		{"ends with bare CR", []byte("Subject: x\r\n\r\nold mac\r")},
		{"bare LF dots", []byte("a\n.b\n..c\r\n")},
		{"empty", []byte("")},
		{"only CRLF", []byte("\r\n")},
	}
}

func TestRetrByteExact(t *testing.T) {
	cases := corpus()
	var msgs []pop3test.Message
	for _, tc := range cases {
		msgs = append(msgs, pop3test.Message{Data: tc.data})
	}
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, msgs...))
	c := login(t, srv, nil)
	for i, tc := range cases {
		got := retrAll(t, c, i+1)
		if want := wire(tc.data); !bytes.Equal(got, want) {
			t.Errorf("%s: got %d octets %q..., want %d octets", tc.name, len(got), head(got), len(want))
		}
	}
	// The same through the pipeline.
	err := c.RetrPipelined(context.Background(), seq(len(cases)), func(n int, r io.Reader) error {
		got, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if want := wire(cases[n-1].data); !bytes.Equal(got, want) {
			t.Errorf("pipelined %s: got %q", cases[n-1].name, head(got))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func head(b []byte) []byte { return b[:min(len(b), 40)] }

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i + 1
	}
	return out
}

// bigMessage returns a message of about size octets with dot lines, long
// lines and 8-bit octets.
func bigMessage(size int) []byte {
	var b bytes.Buffer
	b.Grow(size + 1000)
	b.WriteString("Subject: big\r\n\r\n")
	for i := 0; b.Len() < size; i++ {
		switch i % 5 {
		case 0:
			fmt.Fprintf(&b, ".line %d starts with a dot\r\n", i)
		case 1:
			b.WriteString(strings.Repeat("z", 5000) + "\r\n")
		case 2:
			fmt.Fprintf(&b, "8-bit \xc3\xa9\xff\x00 line %d\r\n", i)
		default:
			fmt.Fprintf(&b, "plain line %d with some text to make it longer\r\n", i)
		}
	}
	return b.Bytes()
}

func TestRetr20MBStreams(t *testing.T) {
	data := bigMessage(20 << 20)
	want := sha256.Sum256(data)
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, pop3test.Message{Data: data}))
	c := login(t, srv, nil)

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := c.Retr(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&after)
	if n != int64(len(data)) || [32]byte(h.Sum(nil)) != want {
		t.Fatalf("got %d octets with another hash, want %d", n, len(data))
	}
	// Client and fake server share this process; together they may
	// allocate buffers, but nothing near the message's size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 4<<20 {
		t.Errorf("allocated %d bytes to stream a %d-byte message", alloc, len(data))
	}
}

// TestRetrDeliversBeforeTheMessageIsComplete proves streaming directly:
// the server sends part of the message and waits; the client must hand
// that part to the caller before the rest is sent.
func TestRetrDeliversBeforeTheMessageIsComplete(t *testing.T) {
	data := bigMessage(1 << 20)
	release := make(chan struct{})
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, pop3test.Message{Data: data}),
		pop3test.WithFault(pop3test.Pause("RETR 1", 200<<10, release)))
	c := login(t, srv, nil)
	r, err := c.Retr(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 150<<10)
	if _, err := io.ReadFull(r, first); err != nil {
		t.Fatalf("reading the first part while the server waits: %v", err)
	}
	close(release)
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(first, rest...); !bytes.Equal(got, data) {
		t.Fatal("message differs")
	}
}

func TestRetrMaxMessageSize(t *testing.T) {
	const limit = 1000
	msgs := []pop3test.Message{
		{Data: []byte(strings.Repeat("a", limit-2) + "\r\n")},   // exactly the limit
		{Data: []byte(strings.Repeat("b", 1500-2) + "\r\n")},    // over, rest within another limit
		{Data: []byte("Subject: small\r\n\r\nok\r\n")},          // fine
		{Data: []byte(strings.Repeat("c", 5*limit-2) + "\r\n")}, // far over
	}
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, msgs...))
	opts := plain()
	opts.MaxMessageSize = limit
	c := login(t, srv, opts)
	ctx := context.Background()

	if got := retrAll(t, c, 1); len(got) != limit {
		t.Fatalf("message at the limit: %d octets", len(got))
	}

	r, err := c.Retr(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if !errors.Is(err, pop3.ErrTooLarge) || pop3.Temporary(err) || len(got) != limit {
		t.Fatalf("over the limit: %d octets, %v", len(got), err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Close after ErrTooLarge: %v", err)
	}
	if got := retrAll(t, c, 3); !bytes.Equal(got, msgs[2].Data) {
		t.Fatalf("session not usable after a too-large message: %q", got)
	}

	r, err = c.Retr(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(r); !errors.Is(err, pop3.ErrTooLarge) {
		t.Fatalf("far over the limit: %v", err)
	}
	if err := r.Close(); !errors.Is(err, pop3.ErrTooLarge) {
		t.Fatalf("Close far over the limit = %v, want ErrTooLarge (connection given up)", err)
	}
	if err := c.Noop(ctx); !errors.Is(err, pop3.ErrClosed) {
		t.Fatalf("Noop = %v, want ErrClosed", err)
	}
}

func TestRetrUnreadBodyIsDiscarded(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, pop3test.Message{Data: bigMessage(300 << 10)}))
	c := login(t, srv, nil)
	ctx := context.Background()
	r, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	// Not closed: the next command discards the rest first.
	if n, _, err := c.Stat(ctx); err != nil || n != 1 {
		t.Fatalf("Stat = %d %v", n, err)
	}
	if _, err := r.Read(make([]byte, 10)); err == nil {
		t.Fatal("Read after the body was discarded succeeded")
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestTop(t *testing.T) {
	msg := "Subject: top\r\nFrom: a@b\r\n\r\nline 1\r\n.line 2\r\nline 3\r\n"
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, pop3test.Message{Data: []byte(msg)}))
	c := login(t, srv, nil)
	r, err := c.Top(context.Background(), 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if want := "Subject: top\r\nFrom: a@b\r\n\r\nline 1\r\n.line 2\r\n"; err != nil || string(got) != want {
		t.Fatalf("Top = %q, %v", got, err)
	}
}

func TestRetrContextCancelled(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, pop3test.Message{Data: bigMessage(100 << 10)}),
		pop3test.WithFault(pop3test.Pause("RETR", 1000, release)))
	opts := plain()
	opts.Timeout = 10 * time.Second
	c := login(t, srv, opts)
	ctx, cancel := context.WithCancel(context.Background())
	r, err := c.Retr(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err = io.ReadAll(r)
	if !errors.Is(err, context.Canceled) || pop3.Temporary(err) {
		t.Fatalf("ReadAll = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("cancellation took %v", d)
	}
	if err := c.Noop(context.Background()); !errors.Is(err, pop3.ErrClosed) {
		t.Fatalf("Noop after cancel = %v, want ErrClosed", err)
	}
}
