package imapsync_test

import (
	"net"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// memHooks makes an imapmemserver fail or observe commands, for tests of
// failure paths. A nil hook does nothing.
type memHooks struct {
	// login runs before LOGIN; an error refuses it.
	login func(user, pass string) error
	// store runs before a STORE; an error refuses it.
	store func(flags *imap.StoreFlags) error
	// fetch runs before a FETCH.
	fetch func(options *imap.FetchOptions)
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
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &hookedSession{Session: mem.NewSession(), h: h}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
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
	h *memHooks
}

var (
	_ imapserver.SessionMove      = (*hookedSession)(nil)
	_ imapserver.SessionNamespace = (*hookedSession)(nil)
)

func (s *hookedSession) Login(user, pass string) error {
	if s.h.login != nil {
		if err := s.h.login(user, pass); err != nil {
			return err
		}
	}
	return s.Session.Login(user, pass)
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
	return s.Session.Fetch(w, set, opts)
}

func (s *hookedSession) Move(w *imapserver.MoveWriter, set imap.NumSet, dest string) error {
	return s.Session.(imapserver.SessionMove).Move(w, set, dest)
}

func (s *hookedSession) Namespace() (*imap.NamespaceData, error) {
	return s.Session.(imapserver.SessionNamespace).Namespace()
}
