// Package pop3test is a small, scriptable fake POP3 server for tests.
//
// NewServer starts a server on 127.0.0.1:0 that serves one maildrop per
// user and implements RFC 1939 (USER/PASS, APOP, STAT, LIST, UIDL, RETR,
// TOP, DELE, NOOP, RSET, QUIT), CAPA with RESP-CODES, AUTH-RESP-CODE,
// PIPELINING and LOGIN-DELAY (RFC 2449), STLS (RFC 2595), AUTH PLAIN,
// XOAUTH2 and OAUTHBEARER (RFC 5034, RFC 7628) and UTF8 (RFC 6856, WithUTF8), with a self-signed
// certificate made in memory (see ClientTLSConfig). It behaves like a
// careful real server:
//
//   - a maildrop is locked by the session that logged in to it; a second
//     login gets "-ERR [IN-USE]" until that session ends;
//   - DELE only marks; deletions are applied when QUIT is answered in the
//     TRANSACTION state, never when the connection just drops;
//   - RETR sends the stored octets dot-stuffed (a "." is added at the start
//     of the message and after every CRLF where a "." follows), adds a CRLF
//     when the message does not end in one, then ".\r\n"; bare CR and bare
//     LF are sent as they are. LIST reports the stored length.
//
// WithDowngrade makes it rewrite messages with 8-bit octets for a session
// that has not sent UTF8, as RFC 6856 lets a server do.
//
// Faults (WithFault, InjectFault) make it misbehave at a chosen command:
// drop the connection mid-answer, answer arbitrary bytes (a bare "+OK",
// "-ERR [SYS/TEMP] ...", garbage), stall forever, send an endless line,
// answer late, or pause mid-answer.
//
// For assertions it records every command line received (Commands,
// CommandCount), counts sessions (ActiveSessions, MaxConcurrentSessions,
// TotalSessions; a session is one connection), counts logins per maildrop
// and the logins refused because another session held it (Logins,
// InUseRefusals), and counts commands that arrived while an earlier one
// was still unanswered (PipelinedCommands).
//
// Everything stops in t.Cleanup; the server is safe for concurrent use.
package pop3test

import (
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is a message in a maildrop.
type Message struct {
	// UID is the UIDL unique-id; if empty the server assigns "uid-N".
	UID string
	// Data is the message as stored; RETR sends it as described in the
	// package documentation.
	Data []byte
}

// stored is a message in a maildrop; sessions refer to it by pointer.
type stored struct{ Message }

type mailbox struct {
	password string
	token    string // XOAUTH2 bearer token
	msgs     []*stored
	locked   bool
	logins   int // logins that locked the maildrop
	refused  int // logins refused with [IN-USE] while it was locked
}

type config struct {
	implicitTLS  bool
	stls         bool
	noUIDL       bool
	noCAPA       bool
	noPipelining bool
	noUSER       bool
	apop         bool
	sasl         []string
	loginDelay   int      // -1: not advertised
	utf8         []string // UTF8 capability arguments; nil: not offered
	downgrade    bool
	extraCaps    []string
	faults       []Fault
	tokenCheck   func(user, token string) bool
	autologout   time.Duration // 0: never
	boxes        map[string]*mailbox
	order        []string
}

// Option configures a Server.
type Option func(*config)

// WithMailbox adds a user with a password and a maildrop.
func WithMailbox(user, password string, msgs ...Message) Option {
	return func(c *config) {
		b := c.box(user)
		b.password = password
		for _, m := range msgs {
			b.msgs = append(b.msgs, &stored{m})
		}
	}
}

// WithXOAUTH2Token sets the bearer token that XOAUTH2 accepts for user.
func WithXOAUTH2Token(user, token string) Option {
	return func(c *config) { c.box(user).token = token }
}

// WithTokenCheck makes XOAUTH2 and OAUTHBEARER also accept a bearer token
// for which check returns true (a token of a test's OAuth 2.0 server, say);
// the user must have a maildrop. check is called on the session's
// goroutine and must be safe for concurrent use.
func WithTokenCheck(check func(user, token string) bool) Option {
	return func(c *config) { c.tokenCheck = check }
}

// WithImplicitTLS makes the server speak TLS from the first byte (port
// 995 style).
func WithImplicitTLS() Option { return func(c *config) { c.implicitTLS = true } }

// WithSTLS offers STLS in CAPA and implements it.
func WithSTLS() Option { return func(c *config) { c.stls = true } }

// WithoutUIDL removes UIDL: not in CAPA, and UIDL answers "-ERR".
func WithoutUIDL() Option { return func(c *config) { c.noUIDL = true } }

// WithoutCAPA makes CAPA answer "-ERR", like an RFC 1939-only server.
func WithoutCAPA() Option { return func(c *config) { c.noCAPA = true } }

// WithoutPipelining removes PIPELINING from CAPA. (Commands sent ahead
// are still answered in order, as by any server reading a TCP stream.)
func WithoutPipelining() Option { return func(c *config) { c.noPipelining = true } }

// WithoutUSER removes USER/PASS: not in CAPA, and both answer "-ERR".
func WithoutUSER() Option { return func(c *config) { c.noUSER = true } }

// WithAPOP puts an APOP timestamp in the greeting and implements APOP.
func WithAPOP() Option { return func(c *config) { c.apop = true } }

// WithSASL offers and implements the SASL mechanisms (PLAIN, XOAUTH2,
// OAUTHBEARER).
func WithSASL(mechs ...string) Option {
	return func(c *config) {
		for _, m := range mechs {
			c.sasl = append(c.sasl, strings.ToUpper(m))
		}
	}
}

// WithLoginDelay advertises "LOGIN-DELAY seconds" in CAPA (it is not
// enforced; use a fault replying "-ERR [LOGIN-DELAY] ..." for that).
func WithLoginDelay(seconds int) Option { return func(c *config) { c.loginDelay = seconds } }

// WithUTF8 offers the UTF8 command (RFC 6856) with the given capability
// arguments ("USER" says UTF-8 credentials are accepted) and implements
// it: UTF8 is answered "+OK" before and after authentication, and puts
// the session in UTF-8 mode (see WithDowngrade). Test refusals with a
// fault ("UTF8").
func WithUTF8(args ...string) Option {
	return func(c *config) { c.utf8 = append([]string{}, args...) }
}

// WithDowngrade rewrites every message containing an octet above 127 for
// a session not in UTF-8 mode, as a server holding raw UTF-8 mail may for
// a client that has not sent UTF8 (RFC 6856 section 1): header fields
// with 8-bit octets get their value as an RFC 2047 encoded word, and an
// 8-bit body is sent base64-encoded under "Content-Transfer-Encoding:
// base64". LIST and STAT report the rewritten sizes to such a session, as
// a consistent server would. Combine it with WithUTF8 to let a client
// avoid the rewrite.
func WithDowngrade() Option { return func(c *config) { c.downgrade = true } }

// WithCapability adds a line to the CAPA answer.
func WithCapability(line string) Option {
	return func(c *config) { c.extraCaps = append(c.extraCaps, line) }
}

// WithAutologout ends a session whose client sends no command for d, as
// RFC 1939's inactivity autologout timer does (at least 10 minutes on a
// real server): the session ends without the UPDATE state, so nothing
// marked deleted is removed, and the maildrop is unlocked.
func WithAutologout(d time.Duration) Option { return func(c *config) { c.autologout = d } }

// WithFault installs a fault from the start (the greeting included).
func WithFault(f Fault) Option { return func(c *config) { c.faults = append(c.faults, f) } }

func (c *config) box(user string) *mailbox {
	if c.boxes == nil {
		c.boxes = map[string]*mailbox{}
	}
	b, ok := c.boxes[user]
	if !ok {
		b = &mailbox{}
		c.boxes[user] = b
		c.order = append(c.order, user)
	}
	return b
}

// Server is a running fake POP3 server.
type Server struct {
	cfg       config
	ln        net.Listener
	serverTLS *tls.Config
	clientTLS *tls.Config
	done      chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu        sync.Mutex
	boxes     map[string]*mailbox
	faults    []*Fault
	commands  []string
	active    int
	peak      int
	total     int
	pipelined int
	conns     map[net.Conn]struct{}
	nextUID   int
	idle      *sync.Cond
}

// NewServer starts a server on 127.0.0.1:0 and stops it in t.Cleanup.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	cfg := config{loginDelay: -1}
	for _, o := range opts {
		o(&cfg)
	}
	serverTLS, clientTLS, err := selfSigned()
	if err != nil {
		t.Fatalf("pop3test: certificate: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pop3test: listen: %v", err)
	}
	s := &Server{
		cfg:       cfg,
		ln:        ln,
		serverTLS: serverTLS,
		clientTLS: clientTLS,
		done:      make(chan struct{}),
		boxes:     map[string]*mailbox{},
		conns:     map[net.Conn]struct{}{},
	}
	s.idle = sync.NewCond(&s.mu)
	for _, user := range cfg.order {
		b := cfg.boxes[user]
		for _, m := range b.msgs {
			s.assignUID(&m.Message)
		}
		s.boxes[user] = b
	}
	for _, f := range cfg.faults {
		s.InjectFault(f)
	}
	t.Cleanup(s.Close)
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *Server) assignUID(m *Message) {
	s.nextUID++
	if m.UID == "" {
		m.UID = fmt.Sprintf("uid-%d", s.nextUID)
	}
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			conn.Close()
			return
		default:
		}
		s.conns[conn] = struct{}{}
		s.active++
		s.total++
		s.peak = max(s.peak, s.active)
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serve(conn)
	}
}

func (s *Server) serve(conn net.Conn) {
	defer s.wg.Done()
	ss := newSession(s, conn)
	defer func() {
		ss.unlock()
		conn.Close()
		s.mu.Lock()
		delete(s.conns, conn)
		s.active--
		s.idle.Broadcast()
		s.mu.Unlock()
	}()
	ss.run()
}

// Close stops the server and closes every connection. It is called by
// t.Cleanup and may be called earlier.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.done)
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// Addr returns the "127.0.0.1:port" the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// ClientTLSConfig returns a client TLS config that trusts the server's
// self-signed certificate (valid for 127.0.0.1, ::1 and localhost).
func (s *Server) ClientTLSConfig() *tls.Config { return s.clientTLS.Clone() }

// Deliver appends messages to user's maildrop (creating the user, with an
// empty password, if unknown). Sessions already logged in do not see them,
// as with a real server.
func (s *Server) Deliver(user string, msgs ...Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.boxes[user]
	if !ok {
		b = &mailbox{}
		s.boxes[user] = b
	}
	for _, m := range msgs {
		s.assignUID(&m)
		b.msgs = append(b.msgs, &stored{m})
	}
}

// Messages returns user's maildrop as committed (after the QUITs so far).
func (s *Server) Messages(user string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.boxes[user]
	if !ok {
		return nil
	}
	out := make([]Message, len(b.msgs))
	for i, m := range b.msgs {
		out[i] = m.Message
	}
	return out
}

// InjectFault adds a fault; it applies to commands received from now on.
// Faults are tried in the order added; the first that matches fires.
func (s *Server) InjectFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
}

// ClearFaults removes all faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// takeFault returns the fault for line ("GREETING" for the greeting) and
// counts it as fired, or nil.
func (s *Server) takeFault(line string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if !f.matches(line) {
			continue
		}
		fired := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				s.faults = slices.Delete(s.faults, i, i+1)
			}
		}
		return &fired
	}
	return nil
}

// Commands returns every line received so far (commands, and SASL
// responses inside AUTH), in order, across
// all sessions (arguments included, passwords too: this is a test server).
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.commands)
}

// CommandCount returns how many commands with the verb were received.
func (s *Server) CommandCount(verb string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.commands {
		v, _, _ := strings.Cut(c, " ")
		if strings.EqualFold(v, verb) {
			n++
		}
	}
	return n
}

// Logins returns, per user, how many logins locked the maildrop.
func (s *Server) Logins() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.boxes))
	for user, b := range s.boxes {
		out[user] = b.logins
	}
	return out
}

// InUseRefusals returns, per user, how many logins were refused with
// [IN-USE] because another session held the maildrop: the server's view
// of two clients working one maildrop at once.
func (s *Server) InUseRefusals() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for user, b := range s.boxes {
		if b.refused > 0 {
			out[user] = b.refused
		}
	}
	return out
}

// ActiveSessions returns the number of open connections.
func (s *Server) ActiveSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// MaxConcurrentSessions returns the most connections that were open at
// once.
func (s *Server) MaxConcurrentSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// TotalSessions returns the number of connections accepted.
func (s *Server) TotalSessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// PipelinedCommands returns how many commands were already waiting in the
// input when the command before them was read: evidence that a client
// sent commands without waiting for answers.
func (s *Server) PipelinedCommands() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pipelined
}

// WaitIdle waits until no session is open, up to timeout, and reports
// whether that happened. A client that dropped its connection may still
// hold the maildrop lock for a moment; call WaitIdle before checking
// Messages or logging in again.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		s.mu.Lock()
		s.idle.Broadcast()
		s.mu.Unlock()
	})
	defer timer.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for s.active > 0 && time.Now().Before(deadline) {
		s.idle.Wait()
	}
	return s.active == 0
}

func (s *Server) record(line string, pipelined bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.commands = append(s.commands, line)
	if pipelined {
		s.pipelined++
	}
}
