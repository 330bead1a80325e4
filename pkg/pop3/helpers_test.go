package pop3_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

const (
	user = "alice"
	pass = "s3cret"
)

// plain are Options for a plaintext connection with a short timeout.
func plain() *pop3.Options {
	return &pop3.Options{Security: pop3.SecurityNone, Timeout: 2 * time.Second}
}

func dial(t *testing.T, srv *pop3test.Server, opts *pop3.Options) *pop3.Client {
	t.Helper()
	if opts == nil {
		opts = plain()
	}
	c, err := pop3.Dial(context.Background(), srv.Addr(), opts)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t *testing.T, srv *pop3test.Server, opts *pop3.Options) *pop3.Client {
	t.Helper()
	c := dial(t, srv, opts)
	if err := c.Login(context.Background(), pop3.Credentials{Username: user, Password: pass}, pop3.MechanismAuto); err != nil {
		t.Fatalf("Login: %v", err)
	}
	return c
}

func messages(n int, body func(i int) string) []pop3test.Message {
	out := make([]pop3test.Message, n)
	for i := range out {
		out[i] = pop3test.Message{UID: fmt.Sprintf("u%05d", i+1), Data: []byte(body(i))}
	}
	return out
}

func simpleMessage(i int) string {
	return fmt.Sprintf("Subject: message %d\r\n\r\nbody %d\r\n", i+1, i+1)
}

// retrAll reads message n whole.
func retrAll(t *testing.T, c *pop3.Client, n int) []byte {
	t.Helper()
	r, err := c.Retr(context.Background(), n)
	if err != nil {
		t.Fatalf("Retr %d: %v", n, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Retr %d: read: %v", n, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Retr %d: close: %v", n, err)
	}
	return b
}

// wire returns what a client receives for a stored message: the message,
// with a CRLF added if it does not end in one.
func wire(data []byte) []byte {
	if n := len(data); n >= 2 && data[n-2] == '\r' && data[n-1] == '\n' {
		return data
	}
	return append(append([]byte(nil), data...), '\r', '\n')
}

func sum(b []byte) [32]byte { return sha256.Sum256(b) }
