package imapsync_test

import (
	"bytes"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// lockedBuffer is a log destination shared by goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMemPasswordsNeverLogged: a full sync of one account and a refused
// login of another, logged at debug level: neither password appears in
// the logs or in the accounts' status.
func TestMemPasswordsNeverLogged(t *testing.T) {
	const right, wrong = "Right-Pw-5e1c9a", "Wrong-Pw-77c1b2"
	mem := imapmemserver.New()
	u := imapmemserver.NewUser("carol", right)
	if err := u.Create("INBOX", nil); err != nil {
		t.Fatal(err)
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
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	addr := lis.Addr().String()
	tp := dialPlain(t, addr, "carol", right)
	for i := 1; i <= 3; i++ {
		appendMsg(t, tp, "INBOX", testMessage(i, "INBOX"))
	}

	e := startStore(t)
	good := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "carol", right, nil)
	bad := e.createAccount(t, addr, mailbusv1.Security_SECURITY_NONE, "carol", wrong, nil)
	var logs lockedBuffer
	sy := startSync(t, e, func(c *imapsync.Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	waitFor(t, "the good account synced", func() bool { return len(e.storeFolder(t, good.Id, "INBOX")) == 3 })
	waitFor(t, "the bad account parked", func() bool {
		return e.account(t, bad.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED
	})
	sy.stop()
	out := logs.String()
	if !strings.Contains(out, bad.Id) {
		t.Fatalf("the logs do not mention the parked account %s: nothing was logged?\n%s", bad.Id, out)
	}
	for _, pw := range []string{right, wrong} {
		if strings.Contains(out, pw) {
			t.Errorf("a password is in the logs")
		}
		for _, a := range []string{good.Id, bad.Id} {
			if strings.Contains(e.account(t, a).GetStatus().String(), pw) {
				t.Errorf("a password is in account %s's status", a)
			}
		}
	}
}
