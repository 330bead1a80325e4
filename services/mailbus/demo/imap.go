package demo

import (
	"bytes"
	"fmt"
	"net"
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// IMAPServer is the demo IMAP server: imapmemserver on a loopback
// address, plaintext (LOGIN allowed without TLS), one user.
type IMAPServer struct {
	srv  *imapserver.Server
	ln   net.Listener
	user *imapmemserver.User
}

type literal struct {
	*bytes.Reader
	size int64
}

func (l literal) Size() int64 { return l.size }

// StartIMAP starts the demo IMAP server on addr ("127.0.0.1:0" for any
// free port) with IMAPUser's folders (IMAPFolders) seeded with
// IMAPMessages.
func StartIMAP(addr string) (*IMAPServer, error) {
	mem := imapmemserver.New()
	u := imapmemserver.NewUser(IMAPUser, IMAPPassword)
	for _, f := range IMAPFolders {
		if err := u.Create(f, nil); err != nil {
			return nil, fmt.Errorf("demo imap: create %s: %w", f, err)
		}
	}
	for _, m := range IMAPMessages() {
		flags := make([]imap.Flag, len(m.Flags))
		for i, f := range m.Flags {
			flags[i] = imap.Flag(f)
		}
		if _, err := u.Append(m.Folder, literal{bytes.NewReader(m.Raw), int64(len(m.Raw))}, &imap.AppendOptions{Flags: flags, Time: m.Date}); err != nil {
			return nil, fmt.Errorf("demo imap: append to %s: %w", m.Folder, err)
		}
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       nopLogger{},
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("demo imap: listen %s: %w", addr, err)
	}
	go srv.Serve(ln)
	return &IMAPServer{srv: srv, ln: ln, user: u}, nil
}

// Deliver appends a message to a folder, as new mail arriving; clients in
// IDLE on the folder are told.
func (s *IMAPServer) Deliver(m Message) error {
	flags := make([]imap.Flag, len(m.Flags))
	for i, f := range m.Flags {
		flags[i] = imap.Flag(f)
	}
	_, err := s.user.Append(m.Folder, literal{bytes.NewReader(m.Raw), int64(len(m.Raw))}, &imap.AppendOptions{Flags: flags, Time: m.Date})
	return err
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

// Addr is the server's address.
func (s *IMAPServer) Addr() *net.TCPAddr { return s.ln.Addr().(*net.TCPAddr) }

// Close stops the server.
func (s *IMAPServer) Close() error { return s.srv.Close() }

// ServerMessage is a message as the IMAP server holds it.
type ServerMessage struct {
	UID       uint32
	MessageID string
	Subject   string
	Flags     []string
}

// Messages reads a folder's messages over IMAP (as any client would),
// ordered by UID.
func (s *IMAPServer) Messages(folder string) ([]ServerMessage, error) {
	c, err := imapclient.DialInsecure(s.ln.Addr().String(), nil)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.Login(IMAPUser, IMAPPassword).Wait(); err != nil {
		return nil, err
	}
	sel, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return nil, err
	}
	if sel.NumMessages == 0 {
		return nil, nil
	}
	var set imap.SeqSet
	set.AddRange(1, sel.NumMessages)
	msgs, err := c.Fetch(set, &imap.FetchOptions{UID: true, Flags: true, Envelope: true}).Collect()
	if err != nil {
		return nil, err
	}
	var out []ServerMessage
	for _, m := range msgs {
		sm := ServerMessage{UID: uint32(m.UID)}
		if m.Envelope != nil {
			sm.MessageID = m.Envelope.MessageID
			sm.Subject = m.Envelope.Subject
		}
		for _, f := range m.Flags {
			sm.Flags = append(sm.Flags, string(f))
		}
		out = append(out, sm)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].UID < out[j].UID })
	return out, nil
}
