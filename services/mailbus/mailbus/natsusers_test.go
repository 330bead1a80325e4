package mailbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/services/mailbus/demo"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// TestNATSUsersWithoutRestart (issue 13, decision 29): consumer users
// written to the users file while serve runs are applied without a
// restart. A per-account user reads its account's events only and is
// refused the stream, other accounts' subjects and every event's; an
// all-accounts user reads every account's; a removed user's connection
// is closed and its login refused. The IMAP sessions serve holds
// upstream stay open throughout.
func TestNATSUsersWithoutRestart(t *testing.T) {
	imapSrv, err := demo.StartIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { imapSrv.Close() })
	upstream := startProxy(t, imapSrv.Addr().String())

	data := filepath.Join(t.TempDir(), "data")
	r := start(t, mailbus.Config{DataDir: data, NATSListen: "127.0.0.1:0", NATSUsersPoll: 20 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	accounts := mailbusv1.NewAccountServiceClient(dial(t, r.info))
	imapAcct, err := accounts.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "imap", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "127.0.0.1", Port: uint32(upstream.port()),
		Security: mailbusv1.Security_SECURITY_NONE, Username: demo.IMAPUser, Secret: demo.IMAPPassword,
	}})
	if err != nil {
		t.Fatal(err)
	}
	popAcct, err := accounts.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "pop", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "127.0.0.1", Port: 1,
		Security: mailbusv1.Security_SECURITY_NONE, Username: "u", Secret: "p",
	}})
	if err != nil {
		t.Fatal(err)
	}
	imapID, popID := imapAcct.Account.Id, popAcct.Account.Id
	waitFor(t, "the IMAP account's initial sync", func() error {
		got, err := accounts.GetAccount(ctx, &mailbusv1.GetAccountRequest{AccountId: imapID})
		if err != nil {
			return err
		}
		if s := got.Account.GetStatus().GetState(); s != mailbusv1.SyncState_SYNC_STATE_IDLE {
			return errors.New(s.String())
		}
		return nil
	})
	sessions := upstream.open()
	if len(sessions) == 0 {
		t.Fatal("no upstream IMAP session open after the initial sync")
	}

	// Users with plain passwords: a bcrypt check under the race detector
	// takes seconds (AddNATSUser's hashes are tested with the CLI).
	one := natsperm.Consumer{User: "one", Password: "one-password", AccountID: imapID}
	all := natsperm.Consumer{User: "all", Password: "all-password", AllAccounts: true}
	writeUsers(t, data, one)
	oneConn := waitConnect(t, r.info.NATSURL, one)
	if got := readPending(t, ctx, oneConn, one.User); len(got) == 0 || slices.ContainsFunc(got, func(id string) bool { return id != imapID }) {
		t.Fatalf("user of account %s read events of accounts %v", imapID, got)
	}
	for _, subject := range []string{events.AllSubjects, events.AccountSubjects(popID)} {
		if !oneConn.refusedSubscription(t, subject) {
			t.Errorf("user of account %s may subscribe to %s", imapID, subject)
		}
	}
	// The raw stream: its info, a message by sequence, a direct get, with
	// the prefix the user's account sees and without.
	for _, subject := range []string{
		natsperm.ConsumerAPIPrefix + ".STREAM.INFO." + events.StreamName,
		natsperm.ConsumerAPIPrefix + ".STREAM.MSG.GET." + events.StreamName,
		"$JS.API.STREAM.INFO." + events.StreamName,
		"$JS.API.DIRECT.GET." + events.StreamName,
	} {
		oneConn.nc.Publish(subject, []byte(`{"seq":1}`))
		if !oneConn.violated(t, subject) {
			t.Errorf("a per-account user may publish to %s", subject)
		}
	}

	// An all-accounts user, added beside the first.
	writeUsers(t, data, one, all)
	allConn := waitConnect(t, r.info.NATSURL, all)
	got := readPending(t, ctx, allConn, all.User)
	if !slices.Contains(got, imapID) || !slices.Contains(got, popID) {
		t.Fatalf("the all-accounts user read events of accounts %v, want %s and %s", got, imapID, popID)
	}

	// Removing the first user closes its connection and refuses it.
	writeUsers(t, data, all)
	select {
	case <-oneConn.closed:
	case <-ctx.Done():
		t.Fatal("the removed user's connection stays open")
	}
	if nc, err := nats.Connect(r.info.NATSURL, nats.UserInfo(one.User, one.Password), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Fatal("a removed user logged in")
	} else if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("a removed user: %v, want an authorization error", err)
	}
	if !allConn.nc.IsConnected() {
		t.Error("the all-accounts user was disconnected by another user's removal")
	}
	for _, s := range sessions {
		if !upstream.isOpen(s) {
			t.Errorf("upstream IMAP session %d was closed while NATS users changed", s)
		}
	}
}

func writeUsers(t *testing.T, data string, users ...natsperm.Consumer) {
	t.Helper()
	b, err := json.Marshal(users)
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(data, "users.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(data, mailbus.NATSUsersFileName)); err != nil {
		t.Fatal(err)
	}
}

// consumerConn is a consumer user's connection, with the permission
// violations the server reported and a channel closed when it closes.
type consumerConn struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	closed chan struct{}

	mu         sync.Mutex
	violations []string
}

// waitConnect connects as u once serve has applied it.
func waitConnect(t *testing.T, url string, u natsperm.Consumer) *consumerConn {
	t.Helper()
	c := &consumerConn{closed: make(chan struct{})}
	waitFor(t, "a login as "+u.User, func() error {
		nc, err := nats.Connect(url, nats.UserInfo(u.User, u.Password), nats.NoReconnect(),
			nats.ClosedHandler(func(*nats.Conn) { close(c.closed) }),
			nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
				c.mu.Lock()
				c.violations = append(c.violations, err.Error())
				c.mu.Unlock()
			}))
		if err != nil {
			return err
		}
		c.nc = nc
		return nil
	})
	t.Cleanup(c.nc.Close)
	var err error
	if c.js, err = jetstream.NewWithAPIPrefix(c.nc, natsperm.ConsumerAPIPrefix); err != nil {
		t.Fatal(err)
	}
	return c
}

// violated reports whether the server refused something on subject.
func (c *consumerConn) violated(t *testing.T, subject string) bool {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	found := false
	waitFor(t, "a permissions violation on "+subject, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, v := range c.violations {
			if strings.Contains(v, "Permissions Violation") && strings.Contains(v, `"`+subject+`"`) {
				found = true
				return nil
			}
		}
		return errors.New("none yet")
	})
	return found
}

func (c *consumerConn) refusedSubscription(t *testing.T, subject string) bool {
	t.Helper()
	sub, err := c.nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	return c.violated(t, subject)
}

// readPending reads the events waiting in the user's consumer and
// returns their account ids.
func readPending(t *testing.T, ctx context.Context, c *consumerConn, user string) []string {
	t.Helper()
	cons, err := c.js.Consumer(ctx, events.StreamName, user)
	if err != nil {
		t.Fatalf("%s's consumer: %v", user, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for range info.NumPending {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		ev, err := events.Unmarshal(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.AccountId)
		if err := msg.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// waitFor retries check until it succeeds, failing the test after
// waitLong.
func waitFor(t *testing.T, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proxy forwards TCP connections to an upstream server and tells which
// are open, to see whether serve's upstream sessions were dropped.
type proxy struct {
	ln net.Listener

	mu    sync.Mutex
	conns map[int]bool // id -> open
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, conns: map[int]bool{}}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for id := 0; ; id++ {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			p.mu.Lock()
			p.conns[id] = true
			p.mu.Unlock()
			go p.pipe(id, client, server)
		}
	}()
	return p
}

func (p *proxy) pipe(id int, client, server net.Conn) {
	done := make(chan struct{}, 2)
	go func() { io.Copy(server, client); done <- struct{}{} }()
	go func() { io.Copy(client, server); done <- struct{}{} }()
	<-done
	client.Close()
	server.Close()
	p.mu.Lock()
	p.conns[id] = false
	p.mu.Unlock()
}

func (p *proxy) port() int { return p.ln.Addr().(*net.TCPAddr).Port }

func (p *proxy) open() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []int
	for id, open := range p.conns {
		if open {
			ids = append(ids, id)
		}
	}
	return ids
}

func (p *proxy) isOpen(id int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.conns[id]
}
