package pop3test

import (
	"bufio"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"io"
	"strings"
)

// login locks user's maildrop if check accepts the mailbox, and answers.
func (ss *session) login(w io.Writer, user string, check func(b *mailbox) bool) error {
	s := ss.s
	s.mu.Lock()
	b, ok := s.boxes[user]
	switch {
	case !ok || !check(b):
		s.mu.Unlock()
		return reply(w, "-ERR [AUTH] invalid credentials")
	case b.locked:
		b.refused++
		s.mu.Unlock()
		return reply(w, "-ERR [IN-USE] maildrop is locked by another session")
	}
	b.locked = true
	b.logins++
	ss.user, ss.box = user, b
	ss.msgs = append([]*stored(nil), b.msgs...)
	ss.deleted = make([]bool, len(ss.msgs))
	s.mu.Unlock()
	return reply(w, "+OK maildrop locked and ready")
}

func (ss *session) userPass(w io.Writer, verb, arg string) error {
	if verb == "USER" {
		ss.userArg = arg
		return reply(w, "+OK")
	}
	if ss.userArg == "" {
		return reply(w, "-ERR USER first")
	}
	user := ss.userArg
	ss.userArg = ""
	return ss.login(w, user, func(b *mailbox) bool { return b.password == arg })
}

func (ss *session) apop(w io.Writer, args []string) error {
	if len(args) != 2 {
		return reply(w, "-ERR usage: APOP name digest")
	}
	return ss.login(w, args[0], func(b *mailbox) bool {
		sum := md5.Sum([]byte(ss.timestamp + b.password))
		return hex.EncodeToString(sum[:]) == strings.ToLower(args[1])
	})
}

func (ss *session) auth(w io.Writer, args []string) error {
	if len(args) == 0 {
		return reply(w, "-ERR mechanism required")
	}
	mech := strings.ToUpper(args[0])
	offered := false
	for _, m := range ss.s.cfg.sasl {
		offered = offered || m == mech
	}
	if !offered || (mech != "PLAIN" && mech != "XOAUTH2") {
		return reply(w, "-ERR unsupported mechanism")
	}
	var resp string
	if len(args) > 1 {
		resp = args[1]
	} else {
		if err := reply(w, "+ "); err != nil {
			return err
		}
		if err := ss.bw.Flush(); err != nil {
			return err
		}
		line, err := ss.readLine()
		if err != nil {
			return err
		}
		ss.s.record(line, false)
		resp = line
	}
	if resp == "*" {
		return reply(w, "-ERR authentication cancelled")
	}
	var ir []byte
	if resp != "=" {
		var err error
		if ir, err = base64.StdEncoding.DecodeString(resp); err != nil {
			return reply(w, "-ERR invalid base64")
		}
	}
	if mech == "PLAIN" {
		parts := strings.Split(string(ir), "\x00")
		if len(parts) != 3 {
			return reply(w, "-ERR [AUTH] malformed PLAIN response")
		}
		return ss.login(w, parts[1], func(b *mailbox) bool { return b.password == parts[2] })
	}
	user, token, ok := parseXOAUTH2(ir)
	if ok {
		ok = false
		ss.s.mu.Lock()
		b, found := ss.s.boxes[user]
		ok = found && b.token != "" && b.token == token
		ss.s.mu.Unlock()
	}
	if !ok {
		// Google's failure dialogue: an error challenge, an empty client
		// line, then -ERR.
		js := `{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}`
		if err := reply(w, "+ %s", base64.StdEncoding.EncodeToString([]byte(js))); err != nil {
			return err
		}
		if err := ss.bw.Flush(); err != nil {
			return err
		}
		line, err := ss.readLine()
		if err != nil {
			return err
		}
		ss.s.record(line, false)
		return reply(w, "-ERR [AUTH] invalid credentials")
	}
	return ss.login(w, user, func(*mailbox) bool { return true })
}

// parseXOAUTH2 parses "user=U\x01auth=Bearer T\x01\x01".
func parseXOAUTH2(ir []byte) (user, token string, ok bool) {
	for _, f := range strings.Split(string(ir), "\x01") {
		switch {
		case strings.HasPrefix(f, "user="):
			user = f[len("user="):]
		case strings.HasPrefix(f, "auth=Bearer "):
			token = f[len("auth=Bearer "):]
		}
	}
	return user, token, user != "" && token != ""
}

func (ss *session) stls(w io.Writer) error {
	if err := reply(w, "+OK begin TLS negotiation"); err != nil {
		return err
	}
	if err := ss.bw.Flush(); err != nil {
		return err
	}
	tc := tls.Server(ss.conn, ss.s.serverTLS)
	if err := tc.Handshake(); err != nil {
		return err
	}
	ss.conn, ss.tls = tc, true
	ss.br = bufio.NewReaderSize(tc, 32<<10)
	ss.bw = bufio.NewWriterSize(tc, 32<<10)
	return nil
}
