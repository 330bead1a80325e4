package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
)

// lmtpSink is a minimal LMTP server (RFC 2033) that writes every message
// it receives into a Maildir (tmp/, then renamed into new/). getmail6 is
// run with its MDA_lmtp destination into it: getmail's Maildir and mbox
// destinations fork a process per message and lose its SIGCHLD now and
// then (getmailcore's _wait_for_child), which stalls and aborts a run of
// 10,000 messages; MDA_lmtp does not fork.
type lmtpSink struct {
	l       net.Listener
	maildir string
	seq     atomic.Int64
}

func startLMTP(maildir string) (*lmtpSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &lmtpSink{l: l, maildir: maildir}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s, nil
}

func (s *lmtpSink) addr() (string, int) {
	a := s.l.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

func (s *lmtpSink) close() { s.l.Close() }

func (s *lmtpSink) serve(c net.Conn) {
	defer c.Close()
	w := bufio.NewWriter(c)
	r := textproto.NewReader(bufio.NewReaderSize(c, 64<<10))
	reply := func(format string, args ...any) bool {
		fmt.Fprintf(w, format+"\r\n", args...)
		return w.Flush() == nil
	}
	if !reply("220 pop3bench LMTP sink") {
		return
	}
	rcpts := 0
	for {
		line, err := r.ReadLine()
		if err != nil {
			return
		}
		verb, _, _ := strings.Cut(strings.ToUpper(line), " ")
		switch verb {
		case "LHLO":
			if !reply("250-pop3bench\r\n250-8BITMIME\r\n250 PIPELINING") {
				return
			}
		case "MAIL":
			rcpts = 0
			reply("250 ok")
		case "RCPT":
			rcpts++
			reply("250 ok")
		case "DATA":
			if !reply("354 go ahead") {
				return
			}
			if err := s.store(r.DotReader()); err != nil {
				reply("451 %v", err)
				continue
			}
			for range max(rcpts, 1) {
				reply("250 stored")
			}
		case "QUIT":
			reply("221 bye")
			return
		default:
			reply("250 ok")
		}
	}
}

func (s *lmtpSink) store(r io.Reader) error {
	name := fmt.Sprintf("%d.lmtp%d.pop3bench", os.Getpid(), s.seq.Add(1))
	tmp := filepath.Join(s.maildir, "tmp", name)
	f, err := os.Create(tmp)
	if err != nil {
		io.Copy(io.Discard, r)
		return err
	}
	_, err = io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(s.maildir, "new", name))
}
