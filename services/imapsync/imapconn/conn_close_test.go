package imapconn

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TestConnCloseAbandonedBody: a FETCH whose body is never read (the
// operation was abandoned) must not make Close wait forever for go-imap's
// reader goroutine.
func TestConnCloseAbandonedBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.Write([]byte("* OK ready\r\n"))
		r := bufio.NewReader(nc)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			_, rest, _ := strings.Cut(line, " ")
			if strings.HasPrefix(strings.ToUpper(rest), "UID FETCH") {
				// A big body, sent in part: the client's reader hands it
				// over and waits for it to be read.
				nc.Write([]byte("* 1 FETCH (UID 1 BODY[] {1000000}\r\n" + strings.Repeat("x", 4096)))
				continue
			}
		}
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := &Conn{c: imapclient.New(raw, nil), raw: raw, timeout: time.Minute}
	if err := c.c.WaitGreeting(); err != nil {
		t.Fatal(err)
	}
	fc := c.c.Fetch(imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
	msg := fc.Next()
	if msg == nil {
		t.Fatal("no message")
	}
	if item := msg.Next(); item == nil {
		t.Fatal("no item")
	}
	// The body is abandoned unread.
	closed := make(chan struct{})
	go func() {
		c.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(15 * time.Second):
		t.Fatal("Close did not return")
	}
}
