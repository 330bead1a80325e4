//go:build linux

package scaleout

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// imapUpstream is an imapmemserver whose sessions are attributed to the
// process that opened them (by its socket, in /proc): the server's own
// view of which replica works which user, and of two replicas at once.
type imapUpstream struct {
	t    testing.TB
	addr string
	mem  *imapmemserver.Server

	mu         sync.Mutex
	users      map[string]*imapmemserver.User
	open       map[string]map[*trackedSession]bool // by user
	owners     func() map[int]string               // live replica pids → names
	frozen     map[int]bool                        // pids under SIGSTOP: their open sessions do not count
	violations []string
	logins     map[string][]login // by user, in order
}

// login is one successful IMAP login as the server saw it.
type login struct {
	at      time.Time
	replica string
}

// trackedSession wraps a memserver session.
type trackedSession struct {
	imapserver.SessionIMAP4rev2
	up      *imapUpstream
	conn    *imapserver.Conn
	user    string
	pid     int
	replica string
}

func startIMAP(t testing.TB, owners func() map[int]string) *imapUpstream {
	t.Helper()
	up := &imapUpstream{t: t, mem: imapmemserver.New(), users: map[string]*imapmemserver.User{},
		open: map[string]map[*trackedSession]bool{}, owners: owners, frozen: map[int]bool{}, logins: map[string][]login{}}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &trackedSession{SessionIMAP4rev2: up.mem.NewSession().(imapserver.SessionIMAP4rev2), up: up, conn: c}, nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true,
		Logger:       testLog{t},
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	up.addr = lis.Addr().String()
	return up
}

// testLog fails the test on a panic in an IMAP session; the server's
// other logs (connections cut by kill -9) are expected.
type testLog struct{ t testing.TB }

func (l testLog) Printf(format string, args ...any) {
	if msg := fmt.Sprintf(format, args...); strings.Contains(msg, "panic") {
		l.t.Errorf("imap server: %s", msg)
	}
}

func (up *imapUpstream) addUser(t testing.TB, name, password string) {
	u := imapmemserver.NewUser(name, password)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
	}
	up.mem.AddUser(u)
	up.mu.Lock()
	up.users[name] = u
	up.mu.Unlock()
}

// deliver appends a message to the user's INBOX (IDLE clients hear of it).
func (up *imapUpstream) deliver(t testing.TB, user string, raw []byte) {
	up.mu.Lock()
	u := up.users[user]
	up.mu.Unlock()
	if _, err := u.Append("INBOX", literal{bytes.NewReader(raw), int64(len(raw))}, &imap.AppendOptions{}); err != nil {
		t.Fatalf("deliver to %s: %v", user, err)
	}
}

type literal struct {
	*bytes.Reader
	n int64
}

func (l literal) Size() int64 { return l.n }

func (s *trackedSession) Login(username, password string) error {
	if err := s.SessionIMAP4rev2.Login(username, password); err != nil {
		return err
	}
	owners := s.up.owners()
	pids := make([]int, 0, len(owners))
	for pid := range owners {
		pids = append(pids, pid)
	}
	s.user = username
	s.pid = peerPID(s.conn.NetConn(), pids)
	s.replica = owners[s.pid]
	if s.replica == "" {
		s.replica = "unknown"
	}
	s.up.loggedIn(s)
	return nil
}

// Idle reports changes every 100 ms until stop. imapmemserver's own IDLE
// waits for the next change's signal and so holds back a change that came
// between the client's last command and IDLE (Dovecot reports it when
// IDLE starts); a new owner's IDLE would then miss the mail the test
// delivers right after it connected.
func (s *trackedSession) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		if err := s.SessionIMAP4rev2.Poll(w, true); err != nil {
			return err
		}
		select {
		case <-stop:
			return nil
		case <-t.C:
		}
	}
}

func (s *trackedSession) Close() error {
	s.up.closed(s)
	return s.SessionIMAP4rev2.Close()
}

func (up *imapUpstream) loggedIn(s *trackedSession) {
	up.mu.Lock()
	defer up.mu.Unlock()
	up.logins[s.user] = append(up.logins[s.user], login{time.Now(), s.replica})
	if up.open[s.user] == nil {
		up.open[s.user] = map[*trackedSession]bool{}
	}
	up.open[s.user][s] = true
	if other := up.otherLocked(s); other != nil {
		// The other replica may be a moment from closing a session it
		// has logged out of (the server notices its end after the client
		// did): look again shortly.
		go func() {
			time.Sleep(2 * time.Second)
			up.mu.Lock()
			defer up.mu.Unlock()
			if up.open[s.user][s] && up.open[s.user][other] && !up.frozen[other.pid] {
				up.violations = append(up.violations, fmt.Sprintf("%s: sessions of %s and %s at once", s.user, other.replica, s.replica))
			}
		}()
	}
}

// otherLocked returns an open session of the user from another process.
func (up *imapUpstream) otherLocked(s *trackedSession) *trackedSession {
	for o := range up.open[s.user] {
		if o.pid != s.pid && !up.frozen[o.pid] {
			return o
		}
	}
	return nil
}

func (up *imapUpstream) closed(s *trackedSession) {
	up.mu.Lock()
	defer up.mu.Unlock()
	delete(up.open[s.user], s)
}

// owner returns the replica with open sessions for the user ("" for
// none; "a+b" for several, frozen ones included).
func (up *imapUpstream) owner(user string) string {
	up.mu.Lock()
	defer up.mu.Unlock()
	var names []string
	for s := range up.open[user] {
		if !slices.Contains(names, s.replica) {
			names = append(names, s.replica)
		}
	}
	slices.Sort(names)
	return strings.Join(names, "+")
}

// ownersNow returns owner(user) for every user.
func (up *imapUpstream) ownersNow() map[string]string {
	up.mu.Lock()
	users := make([]string, 0, len(up.users))
	for u := range up.users {
		users = append(users, u)
	}
	up.mu.Unlock()
	out := map[string]string{}
	for _, u := range users {
		out[u] = up.owner(u)
	}
	return out
}

func (up *imapUpstream) setFrozen(pid int, frozen bool) {
	up.mu.Lock()
	defer up.mu.Unlock()
	up.frozen[pid] = frozen
}

func (up *imapUpstream) takeViolations() []string {
	up.mu.Lock()
	defer up.mu.Unlock()
	v := up.violations
	up.violations = nil
	return v
}

// firstLoginAfter returns the user's first login after t (zero if none).
func (up *imapUpstream) firstLoginAfter(user string, t time.Time) login {
	up.mu.Lock()
	defer up.mu.Unlock()
	for _, l := range up.logins[user] {
		if l.at.After(t) {
			return l
		}
	}
	return login{}
}

// peerPID finds which of pids holds the client end of a loopback TCP
// connection: the socket whose local address is the connection's remote
// one, by its inode in /proc/net/tcp and the processes' fd tables. 0 when
// none does.
func peerPID(c net.Conn, pids []int) int {
	remote, ok1 := c.RemoteAddr().(*net.TCPAddr)
	local, ok2 := c.LocalAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return 0
	}
	inode := ""
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || hexPort(fields[1]) != remote.Port || hexPort(fields[2]) != local.Port {
				continue
			}
			inode = fields[9]
			break
		}
		f.Close()
		if inode != "" {
			break
		}
	}
	if inode == "" || inode == "0" {
		return 0
	}
	want := "socket:[" + inode + "]"
	for _, pid := range pids {
		dir := fmt.Sprintf("/proc/%d/fd", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == want {
				return pid
			}
		}
	}
	return 0
}

// hexPort reads the port of a /proc/net/tcp address ("0100007F:1F90").
func hexPort(addr string) int {
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		return -1
	}
	n, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return -1
	}
	return int(n)
}
