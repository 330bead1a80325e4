package pop3_test

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

func benchClient(b *testing.B, msgs []pop3test.Message) *pop3.Client {
	srv := pop3test.NewServer(b, pop3test.WithMailbox(user, pass, msgs...))
	c, err := pop3.Dial(context.Background(), srv.Addr(), &pop3.Options{Security: pop3.SecurityNone, Timeout: 10 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	if err := c.Login(context.Background(), pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkRetr measures streaming one 8 MiB message (loopback, client and
// fake server in one process).
func BenchmarkRetr(b *testing.B) {
	data := bigMessage(8 << 20)
	c := benchClient(b, []pop3test.Message{{Data: data}})
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.Retr(context.Background(), 1)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

// BenchmarkRetrPipelined measures fetching 1,000 messages of about 8 KiB
// with RetrPipelined; compare with the window 1 variant for the gain.
func BenchmarkRetrPipelined(b *testing.B) {
	body := "Subject: bench\r\n\r\n" + strings.Repeat("a line of an ordinary message body\r\n", 230)
	msgs := messages(1000, func(int) string { return body })
	c := benchClient(b, msgs)
	nums := seq(len(msgs))
	b.SetBytes(int64(len(body) * len(msgs)))
	b.ReportAllocs()
	for b.Loop() {
		err := c.RetrPipelined(context.Background(), nums, func(_ int, r io.Reader) error {
			_, err := io.Copy(io.Discard, r)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}
