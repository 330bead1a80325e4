package demo

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// POP3Server is the demo POP3 server (RFC 1939 with CAPA, UIDL, TOP,
// PIPELINING and RESP-CODES): one maildrop, plaintext USER/PASS on
// loopback, one session at a time ([IN-USE] otherwise), DELE applied at
// QUIT.
type POP3Server struct {
	ln net.Listener

	mu     sync.Mutex
	msgs   []pop3Message
	locked bool
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

type pop3Message struct {
	uidl string
	data []byte
}

// sessionTimeout closes a silent session (RFC 1939 asks for at least ten
// minutes of patience; a demo server can be stricter).
const sessionTimeout = 10 * time.Minute

// StartPOP3 starts the demo POP3 server on addr ("127.0.0.1:0" for any
// free port), seeded with POP3Messages.
func StartPOP3(addr string) (*POP3Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo pop3: listen %s: %w", addr, err)
	}
	s := &POP3Server{ln: ln, conns: map[net.Conn]struct{}{}}
	for _, m := range POP3Messages() {
		s.deliver(m.Raw)
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *POP3Server) deliver(raw []byte) {
	sum := sha256.Sum256(raw)
	s.msgs = append(s.msgs, pop3Message{uidl: hex.EncodeToString(sum[:8]), data: raw})
}

// Deliver adds a message to the maildrop, as new mail arriving.
func (s *POP3Server) Deliver(raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deliver(raw)
}

// Count is the number of messages in the maildrop.
func (s *POP3Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.msgs)
}

// Addr is the server's address.
func (s *POP3Server) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

// Close stops the server and ends every session.
func (s *POP3Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *POP3Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// session is one POP3 session.
type session struct {
	s       *POP3Server
	w       *bufio.Writer
	user    string
	authed  bool
	msgs    []pop3Message // the maildrop as locked
	deleted map[int]bool
}

func (s *POP3Server) serve(c net.Conn) {
	ss := &session{s: s, w: bufio.NewWriter(c), deleted: map[int]bool{}}
	r := bufio.NewReader(c)
	ss.ok("mailbus demo POP3 server ready")
	for {
		// Pipelined commands are answered together.
		if r.Buffered() == 0 {
			if err := ss.w.Flush(); err != nil {
				return
			}
		}
		c.SetReadDeadline(time.Now().Add(sessionTimeout))
		line, err := r.ReadString('\n')
		if err != nil {
			ss.unlock()
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		if ss.handle(strings.ToUpper(verb), arg) {
			ss.w.Flush()
			return
		}
	}
}

func (ss *session) ok(text string)  { fmt.Fprintf(ss.w, "+OK %s\r\n", text) }
func (ss *session) err(text string) { fmt.Fprintf(ss.w, "-ERR %s\r\n", text) }

func (ss *session) unlock() {
	if !ss.authed {
		return
	}
	ss.s.mu.Lock()
	ss.s.locked = false
	ss.s.mu.Unlock()
	ss.authed = false
}

// handle runs one command; it reports whether the session ends.
func (ss *session) handle(verb, arg string) bool {
	switch verb {
	case "CAPA":
		ss.ok("capability list follows")
		for _, c := range []string{"USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES", "IMPLEMENTATION mailbus-demo"} {
			fmt.Fprintf(ss.w, "%s\r\n", c)
		}
		ss.w.WriteString(".\r\n")
		return false
	case "QUIT":
		if ss.authed {
			ss.s.mu.Lock()
			kept := ss.s.msgs[:0:0]
			gone := map[string]bool{}
			for i, m := range ss.msgs {
				if ss.deleted[i] {
					gone[m.uidl] = true
				}
			}
			for _, m := range ss.s.msgs {
				if !gone[m.uidl] {
					kept = append(kept, m)
				}
			}
			ss.s.msgs = kept
			ss.s.locked = false
			ss.s.mu.Unlock()
			ss.authed = false
		}
		ss.ok("bye")
		return true
	case "NOOP":
		ss.ok("")
		return false
	}
	if !ss.authed {
		ss.authorization(verb, arg)
		return false
	}
	ss.transaction(verb, arg)
	return false
}

func (ss *session) authorization(verb, arg string) {
	switch verb {
	case "USER":
		if arg == "" {
			ss.err("USER needs a name")
			return
		}
		ss.user = arg
		ss.ok("send PASS")
	case "PASS":
		if ss.user != POP3User || arg != POP3Password {
			ss.user = ""
			ss.err("[AUTH] invalid user name or password")
			return
		}
		ss.s.mu.Lock()
		if ss.s.locked {
			ss.s.mu.Unlock()
			ss.err("[IN-USE] maildrop already locked by another session")
			return
		}
		ss.s.locked = true
		ss.msgs = append([]pop3Message(nil), ss.s.msgs...)
		ss.s.mu.Unlock()
		ss.authed = true
		ss.ok(fmt.Sprintf("maildrop locked, %d messages", len(ss.msgs)))
	default:
		ss.err("authenticate first (USER and PASS)")
	}
}

// message parses a message number argument.
func (ss *session) message(arg string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(arg))
	if err != nil || n < 1 || n > len(ss.msgs) {
		ss.err("no such message")
		return 0, false
	}
	if ss.deleted[n-1] {
		ss.err("message already deleted")
		return 0, false
	}
	return n - 1, true
}

func (ss *session) transaction(verb, arg string) {
	switch verb {
	case "STAT":
		n, size := 0, 0
		for i, m := range ss.msgs {
			if !ss.deleted[i] {
				n++
				size += len(m.data)
			}
		}
		ss.ok(fmt.Sprintf("%d %d", n, size))
	case "LIST", "UIDL":
		value := func(i int) string {
			if verb == "LIST" {
				return strconv.Itoa(len(ss.msgs[i].data))
			}
			return ss.msgs[i].uidl
		}
		if arg != "" {
			if i, ok := ss.message(arg); ok {
				ss.ok(fmt.Sprintf("%d %s", i+1, value(i)))
			}
			return
		}
		ss.ok("listing follows")
		for i := range ss.msgs {
			if !ss.deleted[i] {
				fmt.Fprintf(ss.w, "%d %s\r\n", i+1, value(i))
			}
		}
		ss.w.WriteString(".\r\n")
	case "RETR":
		if i, ok := ss.message(arg); ok {
			ss.ok(fmt.Sprintf("%d octets", len(ss.msgs[i].data)))
			writeStuffed(ss.w, ss.msgs[i].data)
		}
	case "TOP":
		num, lines, _ := strings.Cut(arg, " ")
		nl, err := strconv.Atoi(strings.TrimSpace(lines))
		if err != nil || nl < 0 {
			ss.err("TOP needs a message number and a line count")
			return
		}
		if i, ok := ss.message(num); ok {
			ss.ok("top of message follows")
			writeStuffed(ss.w, top(ss.msgs[i].data, nl))
		}
	case "DELE":
		if i, ok := ss.message(arg); ok {
			ss.deleted[i] = true
			ss.ok("message deleted")
		}
	case "RSET":
		ss.deleted = map[int]bool{}
		ss.ok("")
	default:
		ss.err("unknown command")
	}
}

// writeStuffed writes a multi-line body with dot-stuffing and the final
// ".".
func writeStuffed(w *bufio.Writer, data []byte) {
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		if len(line) > 0 && line[0] == '.' {
			w.WriteByte('.')
		}
		w.Write(line)
		if !bytes.HasSuffix(line, []byte("\n")) {
			w.WriteString("\r\n")
		}
	}
	w.WriteString(".\r\n")
}

// top returns the header and the first n body lines of a message.
func top(data []byte, n int) []byte {
	i := bytes.Index(data, []byte("\r\n\r\n"))
	if i < 0 {
		return data
	}
	out := data[:i+4]
	body := data[i+4:]
	for ; n > 0 && len(body) > 0; n-- {
		j := bytes.IndexByte(body, '\n')
		if j < 0 {
			return append(out[:len(out):len(out)], body...)
		}
		out = append(out[:len(out):len(out)], body[:j+1]...)
		body = body[j+1:]
	}
	return out
}
