package dovecottest_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The raw IMAP and POP3 clients below are just enough to check the server;
// the real clients live in the services.

const ioTimeout = 10 * time.Second

type imapClient struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
	n    int
}

// dialIMAP connects, with implicit TLS when tlsConf is not nil, and checks
// the greeting.
func dialIMAP(t *testing.T, addr string, tlsConf *tls.Config) *imapClient {
	t.Helper()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: ioTimeout}
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	c := &imapClient{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting: %q", g)
	}
	return c
}

// line reads one response line, with any literals inlined.
func (c *imapClient) line() string {
	c.t.Helper()
	var sb strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v (got %q)", err, sb.String()+l)
		}
		l = strings.TrimRight(l, "\r\n")
		sb.WriteString(l)
		// A literal {n} at the end of the line: n bytes follow.
		i := strings.LastIndexByte(l, '{')
		if !strings.HasSuffix(l, "}") || i < 0 {
			return sb.String()
		}
		n, err := strconv.Atoi(strings.TrimSuffix(l[i+1:], "}"))
		if err != nil {
			return sb.String()
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.r, lit); err != nil {
			c.t.Fatalf("read literal: %v", err)
		}
		sb.Write(lit)
	}
}

// cmd sends a command and returns the untagged responses and the tagged
// status line (without the tag).
func (c *imapClient) cmd(format string, args ...any) (untagged []string, status string) {
	c.t.Helper()
	c.n++
	tag := fmt.Sprintf("a%d", c.n)
	if _, err := fmt.Fprintf(c.conn, tag+" "+format+"\r\n", args...); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	for {
		l := c.line()
		if rest, ok := strings.CutPrefix(l, tag+" "); ok {
			return untagged, rest
		}
		untagged = append(untagged, l)
	}
}

// ok is cmd that fails the test unless the command completes with OK.
func (c *imapClient) ok(format string, args ...any) []string {
	c.t.Helper()
	untagged, status := c.cmd(format, args...)
	if !strings.HasPrefix(status, "OK") {
		c.t.Fatalf("%s: %s", fmt.Sprintf(format, args...), status)
	}
	return untagged
}

// startTLS upgrades the connection with STARTTLS.
func (c *imapClient) startTLS(conf *tls.Config) {
	c.t.Helper()
	c.ok("STARTTLS")
	if c.r.Buffered() != 0 {
		c.t.Fatal("data after STARTTLS response")
	}
	tc := tls.Client(c.conn, conf)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("STARTTLS handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

// capabilities returns the CAPABILITY list.
func (c *imapClient) capabilities() []string {
	c.t.Helper()
	for _, l := range c.ok("CAPABILITY") {
		if rest, ok := strings.CutPrefix(l, "* CAPABILITY "); ok {
			return strings.Fields(rest)
		}
	}
	c.t.Fatal("no CAPABILITY response")
	return nil
}

// selectInfo runs SELECT and returns EXISTS and UIDVALIDITY.
func (c *imapClient) selectInfo(mailbox string) (exists int, uidValidity uint32) {
	c.t.Helper()
	for _, l := range c.ok("SELECT %q", mailbox) {
		var n int
		var v uint32
		if _, err := fmt.Sscanf(l, "* %d EXISTS", &n); err == nil {
			exists = n
		}
		if _, err := fmt.Sscanf(l, "* OK [UIDVALIDITY %d]", &v); err == nil {
			uidValidity = v
		}
	}
	return exists, uidValidity
}

type pop3Client struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialPOP3(t *testing.T, addr string, tlsConf *tls.Config) *pop3Client {
	t.Helper()
	var conn net.Conn
	var err error
	d := &net.Dialer{Timeout: ioTimeout}
	if tlsConf != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tlsConf)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	c := &pop3Client{t: t, conn: conn, r: bufio.NewReader(conn)}
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting: %q", g)
	}
	return c
}

func (c *pop3Client) line() string {
	c.t.Helper()
	l, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return strings.TrimRight(l, "\r\n")
}

// cmd sends a command and returns its status line.
func (c *pop3Client) cmd(format string, args ...any) string {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.conn, format+"\r\n", args...); err != nil {
		c.t.Fatalf("write: %v", err)
	}
	return c.line()
}

// ok is cmd that fails the test unless the answer is +OK.
func (c *pop3Client) ok(format string, args ...any) string {
	c.t.Helper()
	status := c.cmd(format, args...)
	if !strings.HasPrefix(status, "+OK") {
		c.t.Fatalf("%s: %s", fmt.Sprintf(format, args...), status)
	}
	return status
}

// multi sends a command with a multi-line answer and returns the body with
// the dot-stuffing removed, byte for byte (CRLF line ends kept).
func (c *pop3Client) multi(format string, args ...any) []byte {
	c.t.Helper()
	c.ok(format, args...)
	var body bytes.Buffer
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read: %v", err)
		}
		if l == ".\r\n" {
			return body.Bytes()
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		body.WriteString(l)
	}
}

func (c *pop3Client) login(user, pass string) {
	c.t.Helper()
	c.ok("USER %s", user)
	c.ok("PASS %s", pass)
}

// stls upgrades the connection with STLS.
func (c *pop3Client) stls(conf *tls.Config) {
	c.t.Helper()
	c.ok("STLS")
	tc := tls.Client(c.conn, conf)
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("STLS handshake: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}
