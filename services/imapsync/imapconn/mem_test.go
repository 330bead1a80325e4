package imapconn_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// The capability sets the tests run against: go-imap's in-memory server
// as it is (IMAP4rev2 implies MOVE and UIDPLUS), and announcing only
// IMAP4rev1, so that a client takes the fallbacks of a server without
// MOVE and UIDPLUS (the server itself still answers what it can).
var (
	rev2Caps = imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}}
	rev1Caps = imap.CapSet{imap.CapIMAP4rev1: {}}
)

// memServer is an imapmemserver on 127.0.0.1:0 with the user alice and
// the folders INBOX and Archive.
type memServer struct {
	host string
	port uint32
}

func startMem(t *testing.T, caps imap.CapSet) *memServer {
	t.Helper()
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("alice", "secret")
	for _, f := range []string{"INBOX", "Archive"} {
		if err := u.Create(f, nil); err != nil {
			t.Fatal(err)
		}
	}
	mem.AddUser(u)
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
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
	host, port, _ := net.SplitHostPort(lis.Addr().String())
	p, _ := strconv.Atoi(port)
	return &memServer{host: host, port: uint32(p)}
}

type nopLogger struct{}

func (nopLogger) Printf(string, ...any) {}

func (s *memServer) account() *mailbusv1.Account {
	return &mailbusv1.Account{Id: "a", Host: s.host, Port: s.port, Security: mailbusv1.Security_SECURITY_NONE, Username: "alice"}
}

// dial logs in as alice with the connection under test.
func (s *memServer) dial(t *testing.T) *imapconn.Conn {
	t.Helper()
	c, err := imapconn.Dial(ctxT(t), s.account(), imapconn.DialOptions{Timeout: time.Minute, Secret: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// thirdParty is a plain go-imap client: it sets up and inspects the
// server's state.
func (s *memServer) thirdParty(t *testing.T) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(net.JoinHostPort(s.host, strconv.Itoa(int(s.port))), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login("alice", "secret").Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return ctx
}

// appendN appends n messages to mailbox and returns their UIDs.
func appendN(t *testing.T, c *imapclient.Client, mailbox string, n int) []uint32 {
	t.Helper()
	var uids []uint32
	for i := range n {
		raw := fmt.Appendf(nil, "Subject: message %d\r\nMessage-ID: <m%d@example.org>\r\n\r\nBody %d.\r\n", i, i, i)
		cmd := c.Append(mailbox, int64(len(raw)), nil)
		if _, err := cmd.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := cmd.Close(); err != nil {
			t.Fatal(err)
		}
		d, err := cmd.Wait()
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uint32(d.UID))
	}
	return uids
}

// uidsIn lists the UIDs in mailbox, as the third party sees them.
func uidsIn(t *testing.T, c *imapclient.Client, mailbox string) []uint32 {
	t.Helper()
	if _, err := c.Select(mailbox, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := c.UIDSearch(&imap.SearchCriteria{}, nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	var out []uint32
	for _, u := range d.AllUIDs() {
		out = append(out, uint32(u))
	}
	slices.Sort(out)
	return out
}

func TestDialLogin(t *testing.T) {
	s := startMem(t, rev2Caps)
	for _, c := range []struct {
		name      string
		secret    string
		wantAuth  bool // a *PermanentError of refused credentials
		wantLogin bool
	}{
		{"right password", "secret", false, true},
		{"wrong password", "wrong", true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := imapconn.Dial(ctxT(t), s.account(), imapconn.DialOptions{Timeout: time.Minute, Secret: c.secret})
			if conn != nil {
				defer conn.Close()
			}
			if c.wantLogin != (err == nil) {
				t.Fatalf("Dial: %v, want logged in %v", err, c.wantLogin)
			}
			var pe *imapconn.PermanentError
			if got := errors.As(err, &pe) && pe.Auth; got != c.wantAuth {
				t.Fatalf("Dial: %v, want a credential failure %v", err, c.wantAuth)
			}
			if err == nil && !conn.Caps().Has(imap.CapUIDPlus) {
				t.Fatalf("capabilities %v after login, want UIDPLUS (implied by IMAP4rev2)", conn.Caps())
			}
		})
	}
}

// A host that cannot be sent is refused before anything is dialled, as a
// permanent error.
func TestDialRefusesBadHost(t *testing.T) {
	a := &mailbusv1.Account{Host: "bad\r\nhost", Port: 143, Security: mailbusv1.Security_SECURITY_NONE, Username: "alice"}
	_, err := imapconn.Dial(ctxT(t), a, imapconn.DialOptions{Timeout: time.Minute, Secret: "x"})
	var pe *imapconn.PermanentError
	if !errors.As(err, &pe) || pe.Auth {
		t.Fatalf("Dial: %v, want a permanent error that is not a credential failure", err)
	}
}

// A server that greets and then says nothing fails the login with
// ErrTimeout: the guard closes the connection.
func TestSilentServerTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	defer close(done)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		nc.Write([]byte("* OK ready\r\n"))
		<-done
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	p, _ := strconv.Atoi(port)
	a := &mailbusv1.Account{Host: host, Port: uint32(p), Security: mailbusv1.Security_SECURITY_NONE, Username: "alice"}
	_, err = imapconn.Dial(ctxT(t), a, imapconn.DialOptions{Timeout: 200 * time.Millisecond, Secret: "secret"})
	if !errors.Is(err, imapconn.ErrTimeout) {
		t.Fatalf("Dial: %v, want ErrTimeout", err)
	}
}

// Select asks for CONDSTORE only of a server that offers it (the
// in-memory server does not), the session's view is the new mailbox's as
// soon as it returns (go-imap beta.8 records it just after: failed once
// under -race before Select waited for it), and a folder that does not
// exist is a NO.
func TestSelect(t *testing.T) {
	s := startMem(t, rev2Caps)
	appendN(t, s.thirdParty(t), "INBOX", 2)
	c := s.dial(t)
	if c.CondStore() {
		t.Fatal("CondStore() on a server without CONDSTORE")
	}
	sel, err := c.Select(ctxT(t), "INBOX")
	if err != nil {
		t.Fatal(err)
	}
	if n, ok := c.SelectedMessages(); sel.NumMessages != 2 || !ok || n != 2 || c.Selected() != "INBOX" {
		t.Fatalf("selected %q with %d messages (%d, %v), want INBOX with 2", c.Selected(), sel.NumMessages, n, ok)
	}
	if _, err := c.Select(ctxT(t), "Nowhere"); !imapconn.IsNo(err) {
		t.Fatalf("Select of a missing folder: %v, want a NO", err)
	}
}

// ExpungeUIDs removes exactly the given UIDs with UIDPLUS; without it, a
// plain EXPUNGE also removes what another client marked \Deleted.
func TestExpungeUIDs(t *testing.T) {
	for _, c := range []struct {
		name string
		caps imap.CapSet
		want []int // indexes of the messages left
	}{
		{"UIDPLUS", rev2Caps, []int{0, 2}},
		{"no UIDPLUS", rev1Caps, []int{0}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startMem(t, c.caps)
			tp := s.thirdParty(t)
			uids := appendN(t, tp, "INBOX", 3)
			if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
				t.Fatal(err)
			}
			if err := tp.Store(imap.UIDSetNum(imap.UID(uids[2])), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
				t.Fatal(err)
			}
			conn := s.dial(t)
			if _, err := conn.Select(ctxT(t), "INBOX"); err != nil {
				t.Fatal(err)
			}
			if err := conn.ExpungeUIDs(ctxT(t), []uint32{uids[1]}); err != nil {
				t.Fatal(err)
			}
			var want []uint32
			for _, i := range c.want {
				want = append(want, uids[i])
			}
			if got := uidsIn(t, tp, "INBOX"); !slices.Equal(got, want) {
				t.Fatalf("INBOX holds %v, want %v", got, want)
			}
		})
	}
}

// MoveUIDs moves with MOVE or with COPY, \Deleted and EXPUNGE; with
// UIDPLUS the result pairs each source UID with its copy's.
func TestMoveUIDs(t *testing.T) {
	for _, c := range []struct {
		name      string
		caps      imap.CapSet
		wantPairs bool
	}{
		{"MOVE", rev2Caps, true},
		{"COPY fallback", rev1Caps, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startMem(t, c.caps)
			tp := s.thirdParty(t)
			uids := appendN(t, tp, "INBOX", 3)
			conn := s.dial(t)
			if _, err := conn.Select(ctxT(t), "INBOX"); err != nil {
				t.Fatal(err)
			}
			r, err := conn.MoveUIDs(ctxT(t), []uint32{uids[0], uids[2]}, "Archive")
			if err != nil {
				t.Fatal(err)
			}
			if got := uidsIn(t, tp, "INBOX"); !slices.Equal(got, []uint32{uids[1]}) {
				t.Fatalf("INBOX holds %v after the move, want %v", got, []uint32{uids[1]})
			}
			archived := uidsIn(t, tp, "Archive")
			if len(archived) != 2 {
				t.Fatalf("Archive holds %v, want 2 messages", archived)
			}
			pairs := r.Pairs()
			if !c.wantPairs {
				return
			}
			want := []imapconn.UIDPair{{Source: uids[0], Dest: archived[0]}, {Source: uids[2], Dest: archived[1]}}
			if !slices.Equal(pairs, want) {
				t.Fatalf("pairs %v, want %v", pairs, want)
			}
		})
	}
}

// Without MOVE, a refused COPY leaves the source alone: the \Deleted
// STORE and the EXPUNGE are sent only once the COPY is answered OK.
func TestMoveRefusedCopyKeepsSource(t *testing.T) {
	s := startMem(t, rev1Caps)
	tp := s.thirdParty(t)
	uids := appendN(t, tp, "INBOX", 2)
	conn := s.dial(t)
	if _, err := conn.Select(ctxT(t), "INBOX"); err != nil {
		t.Fatal(err)
	}
	_, err := conn.MoveUIDs(ctxT(t), uids, "Nowhere")
	var ac *imapconn.AfterCopyError
	if !imapconn.IsNo(err) || errors.As(err, &ac) {
		t.Fatalf("MoveUIDs to a missing folder: %v, want the COPY's NO", err)
	}
	if got := uidsIn(t, tp, "INBOX"); !slices.Equal(got, uids) {
		t.Fatalf("INBOX holds %v after a refused COPY, want %v", got, uids)
	}
}

// UndoCopy expunges exactly the copies a COPYUID named, and refuses (a
// NO) when the destination's UIDVALIDITY is not theirs.
func TestUndoCopy(t *testing.T) {
	s := startMem(t, rev2Caps)
	tp := s.thirdParty(t)
	appendN(t, tp, "Archive", 1) // a message of the destination's own
	uids := appendN(t, tp, "INBOX", 2)
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	d, err := tp.Copy(imapconn.UIDs(uids), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	before := uidsIn(t, tp, "Archive")
	conn := s.dial(t)
	r := &imapconn.MoveResult{UIDValidity: d.UIDValidity, Source: d.SourceUIDs, Dest: d.DestUIDs}
	if !conn.CanUndoCopy(r) {
		t.Fatal("CanUndoCopy false with COPYUID and UIDPLUS")
	}
	stale := &imapconn.MoveResult{UIDValidity: d.UIDValidity + 1, Source: d.SourceUIDs, Dest: d.DestUIDs}
	if err := conn.UndoCopy(ctxT(t), "Archive", stale); !imapconn.IsNo(err) {
		t.Fatalf("UndoCopy under another UIDVALIDITY: %v, want a NO", err)
	}
	if err := conn.UndoCopy(ctxT(t), "Archive", r); err != nil {
		t.Fatal(err)
	}
	if got := uidsIn(t, tp, "Archive"); len(before) != 3 || !slices.Equal(got, before[:1]) {
		t.Fatalf("Archive holds %v (before the undo %v), want only its own message", got, before)
	}
	if conn.CanUndoCopy(&imapconn.MoveResult{}) {
		t.Fatal("CanUndoCopy true without COPYUID")
	}
}

// FetchFlags and ListUIDs read what a third party set: flags by UID, and
// the UIDs to fetch with those over the size limit apart.
func TestFetchFlagsAndListUIDs(t *testing.T) {
	s := startMem(t, rev2Caps)
	tp := s.thirdParty(t)
	uids := appendN(t, tp, "INBOX", 3)
	if _, err := tp.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := tp.Store(imap.UIDSetNum(imap.UID(uids[1])), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	conn := s.dial(t)
	if _, err := conn.Select(ctxT(t), "INBOX"); err != nil {
		t.Fatal(err)
	}
	flagged := map[uint32]bool{}
	err := conn.FetchFlags(ctxT(t), "INBOX", imap.UIDSet{{Start: 1, Stop: 0}}, 0, func(uid uint32, flags []imap.Flag) {
		flagged[uid] = slices.Contains(flags, imap.FlagFlagged)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(flagged) != 3 || !flagged[uids[1]] || flagged[uids[0]] || flagged[uids[2]] {
		t.Fatalf("flagged %v, want only UID %d of 3", flagged, uids[1])
	}
	// Every message here is about 50 bytes: a limit of 10 puts all of
	// them apart; skip leaves out the first.
	small, large, err := conn.ListUIDs(ctxT(t), "INBOX", 1, 0, func(u uint32) bool { return u == uids[0] }, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(small) != 0 || !slices.Equal(large, uids[1:]) {
		t.Fatalf("ListUIDs: %v, large %v; want none, large %v", small, large, uids[1:])
	}
	small, large, err = conn.ListUIDs(ctxT(t), "INBOX", uids[1], 0, func(uint32) bool { return false }, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(small, uids[1:]) || len(large) != 0 {
		t.Fatalf("ListUIDs from %d: %v, large %v; want %v", uids[1], small, large, uids[1:])
	}
	found, err := conn.SearchUIDs(ctxT(t), &imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(found, uids[1:2]) {
		t.Fatalf("SearchUIDs FLAGGED: %v, want %v", found, uids[1:2])
	}
}

// Append stores a message with its flags and reports APPENDUID.
func TestAppend(t *testing.T) {
	s := startMem(t, rev2Caps)
	conn := s.dial(t)
	raw := []byte("Subject: appended\r\n\r\nHello.\r\n")
	d, err := conn.Append(ctxT(t), "Archive", raw, []imap.Flag{imap.FlagSeen}, time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	tp := s.thirdParty(t)
	if got := uidsIn(t, tp, "Archive"); d.UID == 0 || !slices.Equal(got, []uint32{uint32(d.UID)}) {
		t.Fatalf("Archive holds %v, APPENDUID %d", got, d.UID)
	}
	if _, err := conn.Append(ctxT(t), "Nowhere", raw, nil, time.Time{}); !imapconn.IsNo(err) {
		t.Fatalf("Append to a missing folder: %v, want a NO", err)
	}
}

// List keeps at most max mailboxes and says when it dropped some.
func TestList(t *testing.T) {
	s := startMem(t, rev2Caps)
	conn := s.dial(t)
	for _, c := range []struct {
		max         int
		wantN       int
		wantTooMany bool
	}{
		{10, 2, false},
		{2, 2, false},
		{1, 1, true},
	} {
		list, tooMany, err := conn.List(ctxT(t), c.max)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != c.wantN || tooMany != c.wantTooMany {
			t.Errorf("List(max %d): %d mailboxes, tooMany %v; want %d, %v", c.max, len(list), tooMany, c.wantN, c.wantTooMany)
		}
	}
}

// FetchHeaderFields reads only the fields asked for, with UID and size.
func TestFetchHeaderFields(t *testing.T) {
	s := startMem(t, rev2Caps)
	uids := appendN(t, s.thirdParty(t), "INBOX", 2)
	conn := s.dial(t)
	if _, err := conn.Select(ctxT(t), "INBOX"); err != nil {
		t.Fatal(err)
	}
	got := map[uint32]string{}
	err := conn.FetchHeaderFields(ctxT(t), "INBOX", []string{"Message-ID"}, func(m imapconn.HeaderFields) {
		if m.Size == 0 || m.InternalDate.IsZero() {
			t.Errorf("UID %d: size %d, internal date %v", m.UID, m.Size, m.InternalDate)
		}
		got[m.UID] = string(m.Header)
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, u := range uids {
		want := fmt.Sprintf("Message-ID: <m%d@example.org>\r\n\r\n", i)
		if got[u] != want {
			t.Errorf("UID %d: header %q, want %q", u, got[u], want)
		}
	}
}

// FetchEach hands over every message; an error from the callback ends
// the FETCH there (the connection is abandoned, not drained).
func TestFetchEach(t *testing.T) {
	s := startMem(t, rev2Caps)
	uids := appendN(t, s.thirdParty(t), "INBOX", 3)
	conn := s.dial(t)
	if _, err := conn.Select(ctxT(t), "INBOX"); err != nil {
		t.Fatal(err)
	}
	opts := &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}
	var seen []uint32
	err := conn.Do(ctxT(t), func(g *imapconn.Guard) error {
		return conn.FetchEach(g, imapconn.UIDs(uids), opts, func(m *imapclient.FetchMessageData) error {
			b, err := m.Collect()
			if err != nil {
				return err
			}
			seen = append(seen, uint32(b.UID))
			return nil
		})
	})
	if err != nil || !slices.Equal(seen, uids) {
		t.Fatalf("FetchEach: %v, saw %v; want %v", err, seen, uids)
	}
	stop := errors.New("stop here")
	calls := 0
	err = conn.Do(ctxT(t), func(g *imapconn.Guard) error {
		return conn.FetchEach(g, imapconn.UIDs(uids), opts, func(*imapclient.FetchMessageData) error {
			calls++
			return stop
		})
	})
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("FetchEach with a failing callback: %v after %d calls, want %v after 1", err, calls, stop)
	}
}
