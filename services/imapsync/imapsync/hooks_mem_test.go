package imapsync_test

import (
	"io"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
	"github.com/emersion/go-sasl"
)

// memHooks makes an imapmemserver fail or observe commands, for tests of
// failure paths. A nil hook does nothing.
type memHooks struct {
	// login runs before LOGIN (or AUTHENTICATE PLAIN); an error refuses
	// it. c is the server's connection (to say BYE, or cut it).
	login func(c *imapserver.Conn, user, pass string) error
	// mechs are the SASL mechanisms offered (AUTH=); nil means PLAIN,
	// empty none (clients then use LOGIN).
	mechs []string
	// xoauth2 checks an XOAUTH2 or OAUTHBEARER bearer token and returns
	// the password to log the user in with, or an error.
	xoauth2 func(user, token string) (string, error)
	// authUsed, when set, gets each authentication's mechanism ("LOGIN"
	// for LOGIN).
	authUsed func(mech string)
	// store runs before a STORE; an error refuses it.
	store func(flags *imap.StoreFlags) error
	// fetch runs before a FETCH.
	fetch func(options *imap.FetchOptions)
	// examinedFetch runs before a FETCH in a mailbox opened read-only
	// (EXAMINE: imapsync's second connection of an initial sync).
	examinedFetch func()
	// selected runs before a SELECT or EXAMINE.
	selected func(mailbox string, readOnly bool)
	// appendLost, when it returns true for a mailbox, makes APPEND answer
	// OK (without APPENDUID) and store nothing: a server losing mail.
	appendLost func(mailbox string) bool
	// caps replaces the server's capabilities (default IMAP4rev1 and
	// IMAP4rev2, which implies MOVE and UIDPLUS).
	caps imap.CapSet
}

// startMemHooked is startMem with hooks.
func startMemHooked(t testing.TB, h *memHooks, folders ...string) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "secret")
	for _, f := range append([]string{"INBOX"}, folders...) {
		if err := u.Create(f, nil); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(u)
	caps := h.caps
	if caps == nil {
		caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &hookedSession{Session: mem.NewSession(), h: h, c: c}, nil, nil
		},
		Caps:         caps,
		InsecureAuth: true,
		Logger:       nopLogger{},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return &memServer{addr: lis.Addr().String(), user: u}
}

// hookedSession is an imapmemserver session with hooks; it keeps MOVE
// and NAMESPACE, which the embedded interface would hide.
type hookedSession struct {
	imapserver.Session
	h        *memHooks
	c        *imapserver.Conn
	readOnly bool // the selected mailbox was opened with EXAMINE
}

func (s *hookedSession) Select(mailbox string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.readOnly = options != nil && options.ReadOnly
	if s.h.selected != nil {
		s.h.selected(mailbox, s.readOnly)
	}
	return s.Session.Select(mailbox, options)
}

var (
	_ imapserver.SessionMove      = (*hookedSession)(nil)
	_ imapserver.SessionNamespace = (*hookedSession)(nil)
	_ imapserver.SessionSASL      = (*hookedSession)(nil)
)

func (s *hookedSession) Login(user, pass string) error {
	if s.h.authUsed != nil {
		s.h.authUsed("LOGIN")
	}
	return s.login(user, pass)
}

func (s *hookedSession) login(user, pass string) error {
	if s.h.login != nil {
		if err := s.h.login(s.c, user, pass); err != nil {
			return err
		}
	}
	return s.Session.Login(user, pass)
}

func (s *hookedSession) AuthenticateMechanisms() []string {
	if s.h.mechs == nil {
		return []string{sasl.Plain}
	}
	return s.h.mechs
}

func (s *hookedSession) Authenticate(mech string) (sasl.Server, error) {
	if !slices.Contains(s.AuthenticateMechanisms(), mech) {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
	}
	if s.h.authUsed != nil {
		s.h.authUsed(mech)
	}
	switch mech {
	case sasl.Plain:
		return sasl.NewPlainServer(func(identity, user, pass string) error { return s.login(user, pass) }), nil
	case "XOAUTH2":
		return &xoauth2Server{s: s}, nil
	case sasl.OAuthBearer:
		return &oauthBearerServer{s: s}, nil
	}
	return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Text: "SASL mechanism not supported"}
}

// xoauth2Server is the server side of XOAUTH2 (as Gmail speaks it): the
// initial response carries user and token; a bad token gets a JSON
// challenge, and the client's empty answer then a NO.
type xoauth2Server struct {
	s      *hookedSession
	failed bool
}

func (x *xoauth2Server) Next(resp []byte) ([]byte, bool, error) {
	if x.failed {
		if len(resp) != 0 {
			return nil, true, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "want an empty response to the error challenge"}
		}
		return nil, true, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Invalid credentials (Failure)"}
	}
	var user, token string
	for _, kv := range strings.Split(string(resp), "\x01") {
		switch {
		case strings.HasPrefix(kv, "user="):
			user = strings.TrimPrefix(kv, "user=")
		case strings.HasPrefix(kv, "auth=Bearer "):
			token = strings.TrimPrefix(kv, "auth=Bearer ")
		}
	}
	pass, err := x.s.h.xoauth2(user, token)
	if err != nil {
		x.failed = true
		return []byte(`{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}`), false, nil
	}
	return nil, true, x.s.login(user, pass)
}

// oauthBearerServer is the server side of OAUTHBEARER (RFC 7628): the
// initial response "n,a=user,^Aauth=Bearer token^A^A"; a bad token gets a
// JSON challenge, which the client must answer with %x01, then a NO.
type oauthBearerServer struct {
	s      *hookedSession
	failed bool
}

func (o *oauthBearerServer) Next(resp []byte) ([]byte, bool, error) {
	if o.failed {
		if string(resp) != "\x01" {
			return nil, true, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "want %x01 after the error challenge (RFC 7628 3.2.3)"}
		}
		return nil, true, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeAuthenticationFailed, Text: "Authentication failed"}
	}
	gs2, rest, _ := strings.Cut(string(resp), "\x01")
	parts := strings.Split(gs2, ",")
	if len(parts) != 3 || parts[0] != "n" || !strings.HasPrefix(parts[1], "a=") {
		return nil, true, &imap.Error{Type: imap.StatusResponseTypeBad, Text: "malformed GS2 header"}
	}
	user := strings.NewReplacer("=2C", ",", "=3D", "=").Replace(strings.TrimPrefix(parts[1], "a="))
	var token string
	for _, kv := range strings.Split(rest, "\x01") {
		if v, ok := strings.CutPrefix(kv, "auth=Bearer "); ok {
			token = v
		}
	}
	pass, err := o.s.h.xoauth2(user, token)
	if err != nil {
		o.failed = true
		return []byte(`{"status":"invalid_token","schemes":"bearer","scope":"mail"}`), false, nil
	}
	return nil, true, o.s.login(user, pass)
}

func (s *hookedSession) Store(w *imapserver.FetchWriter, set imap.NumSet, flags *imap.StoreFlags, opts *imap.StoreOptions) error {
	if s.h.store != nil {
		if err := s.h.store(flags); err != nil {
			return err
		}
	}
	return s.Session.Store(w, set, flags, opts)
}

func (s *hookedSession) Fetch(w *imapserver.FetchWriter, set imap.NumSet, opts *imap.FetchOptions) error {
	if s.h.fetch != nil {
		s.h.fetch(opts)
	}
	if s.readOnly && s.h.examinedFetch != nil {
		s.h.examinedFetch()
	}
	return s.Session.Fetch(w, set, opts)
}

func (s *hookedSession) Move(w *imapserver.MoveWriter, set imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, set, dest)
}

func (s *hookedSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}

func (s *hookedSession) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	if s.h.appendLost != nil && s.h.appendLost(mailbox) {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, err
		}
		return nil, nil
	}
	return s.Session.Append(mailbox, r, options)
}
