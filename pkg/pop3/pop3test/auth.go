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
	if !offered || (mech != "PLAIN" && mech != "XOAUTH2" && mech != "OAUTHBEARER") {
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
	var user, token string
	var ok bool
	// Google's failure dialogue for XOAUTH2, RFC 7628's for OAUTHBEARER:
	// an error challenge, the client's answer (an empty line; %x01), then
	// -ERR.
	failure := `{"status":"401","schemes":"Bearer","scope":"https://mail.google.com/"}`
	if mech == "OAUTHBEARER" {
		user, token, ok = parseOAuthBearer(ir)
		failure = `{"status":"invalid_token","schemes":"bearer","scope":"https://mail.google.com/"}`
	} else {
		user, token, ok = parseXOAUTH2(ir)
	}
	if ok {
		ok = ss.s.tokenValid(user, token)
	}
	if !ok {
		if err := reply(w, "+ %s", base64.StdEncoding.EncodeToString([]byte(failure))); err != nil {
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

// tokenValid reports whether token is a bearer token for user: the one
// set with WithXOAUTH2Token, or one WithTokenCheck accepts.
func (s *Server) tokenValid(user, token string) bool {
	s.mu.Lock()
	b, found := s.boxes[user]
	ok := found && b.token != "" && b.token == token
	s.mu.Unlock()
	if !ok && found && s.cfg.tokenCheck != nil {
		ok = s.cfg.tokenCheck(user, token)
	}
	return ok
}

// parseOAuthBearer parses RFC 7628's "n,a=U,\x01auth=Bearer T\x01\x01"
// (the user is the GS2 authorization identity, "=2C" and "=3D" escaped).
func parseOAuthBearer(ir []byte) (user, token string, ok bool) {
	gs2, rest, found := strings.Cut(string(ir), "\x01")
	parts := strings.Split(gs2, ",")
	if !found || len(parts) != 3 || parts[0] != "n" || !strings.HasPrefix(parts[1], "a=") {
		return "", "", false
	}
	user = strings.NewReplacer("=2C", ",", "=3D", "=").Replace(parts[1][2:])
	for _, f := range strings.Split(rest, "\x01") {
		if v, ok := strings.CutPrefix(f, "auth="); ok && len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
			token = v[7:]
		}
	}
	return user, token, user != "" && token != ""
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
