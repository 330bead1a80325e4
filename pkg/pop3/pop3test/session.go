package pop3test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// maxCommandLine bounds a command line read by the server.
const maxCommandLine = 1 << 20

type session struct {
	s    *Server
	conn net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer

	tls       bool
	timestamp string // APOP timestamp of the greeting
	userArg   string // from USER
	user      string // logged in as, "" in AUTHORIZATION state
	box       *mailbox
	msgs      []*stored // the maildrop as seen at login
	deleted   []bool
	utf8      bool // the client sent UTF8 (RFC 6856)
}

func newSession(s *Server, conn net.Conn) *session {
	ss := &session{s: s, conn: conn}
	if s.cfg.implicitTLS {
		ss.conn = tls.Server(conn, s.serverTLS)
		ss.tls = true
	}
	ss.br = bufio.NewReaderSize(ss.conn, 32<<10)
	ss.bw = bufio.NewWriterSize(ss.conn, 32<<10)
	return ss
}

// run serves the session until it ends.
func (ss *session) run() {
	if f := ss.s.takeFault("GREETING"); f != nil {
		if !ss.fault(f, ss.greet) {
			return
		}
	} else if ss.greet(ss.bw) != nil {
		return
	}
	if ss.bw.Flush() != nil {
		return
	}
	for {
		line, err := ss.readLine()
		if err != nil {
			return
		}
		ss.s.record(line, ss.br.Buffered() > 0)
		handle := func(w io.Writer) error { return ss.dispatch(w, line) }
		if f := ss.s.takeFault(line); f != nil {
			if !ss.fault(f, handle) {
				return
			}
		} else if !ss.finish(handle(ss.bw)) {
			return
		}
		if ss.br.Buffered() == 0 {
			if ss.bw.Flush() != nil {
				return
			}
		}
	}
}

// errQuit ends a session after a clean QUIT.
var errQuit = errors.New("quit")

func (ss *session) readLine() (string, error) {
	if d := ss.s.cfg.autologout; d > 0 {
		if err := ss.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
			return "", fmt.Errorf("autologout timer: %w", err)
		}
	}
	var line []byte
	for {
		frag, err := ss.br.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxCommandLine {
			return "", errors.New("command line too long")
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return "", err
		}
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// fault applies f around handle and reports whether the session goes on.
func (ss *session) fault(f *Fault, handle func(io.Writer) error) bool {
	switch f.Action {
	case ActionReply:
		ss.bw.Write(f.Reply)
		return ss.bw.Flush() == nil
	case ActionDrop:
		handle(&cutWriter{w: ss.bw, left: f.After})
		ss.bw.Flush()
		return false
	case ActionStall:
		ss.bw.Flush()
		io.Copy(io.Discard, ss.br)
		return false
	case ActionEndlessLine:
		ss.bw.WriteString("+OK ")
		chunk := bytes.Repeat([]byte("x"), 32<<10)
		for written := 0; written < 1<<30; written += len(chunk) {
			if _, err := ss.bw.Write(chunk); err != nil {
				break
			}
			select {
			case <-ss.s.done:
				return false
			default:
			}
		}
		return false
	case ActionDelay:
		select {
		case <-time.After(f.Delay):
		case <-ss.s.done:
			return false
		}
		return ss.finish(handle(ss.bw))
	case ActionPause:
		return ss.finish(handle(&pauseWriter{w: ss.bw, after: f.After, release: f.Release, done: ss.s.done}))
	case ActionDrip:
		var answer bytes.Buffer
		handle(&answer)
		for _, b := range answer.Bytes() {
			select {
			case <-time.After(f.Delay):
			case <-ss.s.done:
				return false
			}
			if err := ss.bw.WriteByte(b); err != nil || ss.bw.Flush() != nil {
				return false
			}
		}
		return true
	}
	return false
}

// finish flushes after a handler that failed (or quit) and reports
// whether the session goes on.
func (ss *session) finish(err error) bool {
	if err != nil {
		ss.bw.Flush()
		return false
	}
	return true
}

func (ss *session) greet(w io.Writer) error {
	text := "+OK pop3test ready"
	if ss.s.cfg.apop {
		ss.timestamp = fmt.Sprintf("<%d.%d@pop3test>", time.Now().UnixNano(), ss.s.TotalSessions())
		text += " " + ss.timestamp
	}
	_, err := io.WriteString(w, text+"\r\n")
	return err
}

func reply(w io.Writer, format string, args ...any) error {
	_, err := fmt.Fprintf(w, format+"\r\n", args...)
	return err
}

func (ss *session) dispatch(w io.Writer, line string) error {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	args := strings.Fields(arg)
	if verb == "CAPA" && !ss.s.cfg.noCAPA {
		return ss.capa(w)
	}
	if verb == "QUIT" {
		return ss.quit(w)
	}
	if verb == "UTF8" && ss.s.cfg.utf8 != nil {
		ss.utf8 = true
		return reply(w, "+OK UTF-8 mode")
	}
	if ss.user == "" {
		switch verb {
		case "USER", "PASS":
			if !ss.s.cfg.noUSER {
				return ss.userPass(w, verb, arg)
			}
		case "APOP":
			if ss.s.cfg.apop {
				return ss.apop(w, args)
			}
		case "AUTH":
			if len(ss.s.cfg.sasl) > 0 {
				return ss.auth(w, args)
			}
		case "STLS":
			if ss.s.cfg.stls && !ss.tls {
				return ss.stls(w)
			}
		}
		return reply(w, "-ERR unknown command or wrong state")
	}
	switch verb {
	case "STAT":
		n, size := 0, 0
		for i := range ss.msgs {
			if !ss.deleted[i] {
				n++
				size += len(ss.data(i))
			}
		}
		return reply(w, "+OK %d %d", n, size)
	case "LIST":
		return ss.list(w, args, func(i int) string { return strconv.Itoa(len(ss.data(i))) })
	case "UIDL":
		if ss.s.cfg.noUIDL {
			break
		}
		return ss.list(w, args, func(i int) string { return ss.msgs[i].UID })
	case "RETR":
		i, err := ss.msgArg(w, args, 1)
		if i < 0 {
			return err
		}
		if err := reply(w, "+OK %d octets", len(ss.data(i))); err != nil {
			return err
		}
		return writeBody(w, ss.data(i))
	case "TOP":
		i, err := ss.msgArg(w, args, 2)
		if i < 0 {
			return err
		}
		lines, perr := strconv.Atoi(args[1])
		if perr != nil || lines < 0 {
			return reply(w, "-ERR invalid line count")
		}
		if err := reply(w, "+OK top of message follows"); err != nil {
			return err
		}
		return writeBody(w, top(ss.data(i), lines))
	case "DELE":
		i, err := ss.msgArg(w, args, 1)
		if i < 0 {
			return err
		}
		ss.deleted[i] = true
		return reply(w, "+OK message %d deleted", i+1)
	case "NOOP":
		return reply(w, "+OK")
	case "RSET":
		clear(ss.deleted)
		return reply(w, "+OK")
	}
	return reply(w, "-ERR unknown command or wrong state")
}

func (ss *session) capa(w io.Writer) error {
	c := &ss.s.cfg
	lines := []string{"+OK capability list follows", "TOP"}
	if !c.noUSER {
		lines = append(lines, "USER")
	}
	if !c.noUIDL {
		lines = append(lines, "UIDL")
	}
	lines = append(lines, "RESP-CODES", "AUTH-RESP-CODE")
	if !c.noPipelining {
		lines = append(lines, "PIPELINING")
	}
	if ss.user == "" {
		if c.stls && !ss.tls {
			lines = append(lines, "STLS")
		}
		if len(c.sasl) > 0 {
			lines = append(lines, "SASL "+strings.Join(c.sasl, " "))
		}
	}
	if c.utf8 != nil {
		lines = append(lines, strings.TrimSpace("UTF8 "+strings.Join(c.utf8, " ")))
	}
	if c.loginDelay >= 0 {
		lines = append(lines, "LOGIN-DELAY "+strconv.Itoa(c.loginDelay))
	}
	lines = append(lines, c.extraCaps...)
	lines = append(lines, "IMPLEMENTATION pop3test", ".")
	_, err := io.WriteString(w, strings.Join(lines, "\r\n")+"\r\n")
	return err
}

// data is message i as this session gets it: as stored, or downgraded
// (WithDowngrade) for a session not in UTF-8 mode.
func (ss *session) data(i int) []byte {
	if ss.s.cfg.downgrade && !ss.utf8 {
		return downgrade(ss.msgs[i].Data)
	}
	return ss.msgs[i].Data
}

// list answers LIST or UIDL, for all messages or one.
func (ss *session) list(w io.Writer, args []string, value func(i int) string) error {
	if len(args) > 0 {
		i, err := ss.msgArg(w, args, 1)
		if i < 0 {
			return err
		}
		return reply(w, "+OK %d %s", i+1, value(i))
	}
	var b strings.Builder
	b.WriteString("+OK\r\n")
	for i := range ss.msgs {
		if !ss.deleted[i] {
			fmt.Fprintf(&b, "%d %s\r\n", i+1, value(i))
		}
	}
	b.WriteString(".\r\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// msgArg parses a message number argument; it returns -1 (after answering
// -ERR) when there is no such message.
func (ss *session) msgArg(w io.Writer, args []string, want int) (int, error) {
	if len(args) < want {
		return -1, reply(w, "-ERR missing argument")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > len(ss.msgs) {
		return -1, reply(w, "-ERR no such message")
	}
	if ss.deleted[n-1] {
		return -1, reply(w, "-ERR message %d already deleted", n)
	}
	return n - 1, nil
}

func (ss *session) quit(w io.Writer) error {
	if ss.user != "" {
		ss.commit()
	}
	reply(w, "+OK bye")
	return errQuit
}

// commit applies the deletions and releases the maildrop.
func (ss *session) commit() {
	s := ss.s
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := map[*stored]bool{}
	for i, d := range ss.deleted {
		if d {
			gone[ss.msgs[i]] = true
		}
	}
	kept := ss.box.msgs[:0:0]
	for _, m := range ss.box.msgs {
		if !gone[m] {
			kept = append(kept, m)
		}
	}
	ss.box.msgs = kept
	ss.box.locked = false
	ss.user, ss.box = "", nil
}

// unlock releases the maildrop without applying deletions.
func (ss *session) unlock() {
	if ss.box == nil {
		return
	}
	ss.s.mu.Lock()
	ss.box.locked = false
	ss.s.mu.Unlock()
	ss.box = nil
}
