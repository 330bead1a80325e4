package pop3fetcher_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/accountrun/accountruntest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
	"github.com/mailbus/mailbus/services/pop3fetcher/pop3fetcher"
)

// pickupEnv is a store, a POP3 server with one message behind a tap, and
// a fetcher whose account list is read once an hour and can be refused:
// an account it polls once lists are refused was picked up from the
// store's announcement (decision 0028).
type pickupEnv struct {
	e    *env
	tap  *accountruntest.Tap
	gate *accountruntest.Gate
}

func startPickup(t *testing.T) *pickupEnv {
	t.Helper()
	p := &pickupEnv{e: startStore(t), gate: accountruntest.NewGate()}
	srv := pop3test.NewServer(t, pop3test.WithMailbox("alice", "secret", pop3test.Message{Data: []byte("Subject: hi\r\n\r\nhello\r\n")}))
	p.tap = accountruntest.StartTap(t, srv.Addr())
	conn := p.e.dial(t, p.e.serviceToken, p.gate.DialOptions()...)
	f, _ := p.e.newFetcher(t, func(c *pop3fetcher.Config) {
		c.Conn = conn
		c.Refresh = time.Hour
	})
	runFetcher(t, f)
	p.gate.WaitWatching(t, waitLong)
	return p
}

// add creates an account of alice on the tap's server.
func (p *pickupEnv) add(t *testing.T, name, secret string) *mailbusv1.Account {
	t.Helper()
	host, port, _ := net.SplitHostPort(p.tap.Addr())
	n, _ := strconv.Atoi(port)
	return p.e.createAccount(t, account{name: name, host: host, port: n, user: "alice", secret: secret})
}

func (p *pickupEnv) waitStored(t *testing.T, what, accountID string) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for len(p.e.stored(t, accountID)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPickupNewAccountAnnounced: an account added while the fetcher runs
// (and every account list is refused) is polled: its first command
// reaches the server, and its message the store.
func TestPickupNewAccountAnnounced(t *testing.T) {
	p := startPickup(t)
	p.gate.RefuseLists(true)
	acct := p.add(t, "new", "secret")
	p.tap.WaitFirstCommand(t, waitLong)
	p.waitStored(t, "the new account's message in the store", acct.Id)
}

// TestPickupUpdateAnnounced: the password of a parked account is fixed
// while every account list is refused; the worker of the new generation
// starts from the announcement and fetches.
func TestPickupUpdateAnnounced(t *testing.T) {
	p := startPickup(t)
	acct := p.add(t, "wrong", "wrong-pw")
	deadline := time.Now().Add(waitLong)
	for p.e.getAccount(t, acct.Id).GetStatus().GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED {
		if time.Now().After(deadline) {
			t.Fatal("the account was not parked by its wrong password")
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.gate.RefuseLists(true)
	p.tap.Drain()
	p.e.updateSecret(t, acct.Id, "secret")
	p.tap.WaitFirstCommand(t, waitLong)
	p.waitStored(t, "the message fetched by the new generation", acct.Id)
}

// TestPickupAfterStoreRestart: the store restarts, breaking the
// announcement stream. An account added right after the restart is polled
// (by the announcement or by the list made when the stream is back), and
// so is one added later while lists are refused: the stream was
// established again.
func TestPickupAfterStoreRestart(t *testing.T) {
	p := startPickup(t)
	p.e.restartStore(t)
	first := p.add(t, "first", "secret")
	p.waitStored(t, "the account added after the restart", first.Id)

	p.gate.WaitWatching(t, waitLong)
	p.gate.RefuseLists(true)
	second := p.add(t, "second", "secret")
	p.waitStored(t, "the account added once the stream was back", second.Id)
}
