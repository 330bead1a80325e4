//go:build linux

package scaleout

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/ownership"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// defaultAccounts is the number of IMAP accounts, and of POP3 accounts,
// in make test; MAILBUS_SCALEOUT_ACCOUNTS changes it (make bench-scaleout
// runs 200).
const defaultAccounts = 50

// leaseTTL is the replicas' lease TTL: short, so that take-overs after a
// crash happen within seconds.
const leaseTTL = 3 * time.Second

// popAutologout is the test POP3 server's inactivity timer (see startCluster).
const popAutologout = 20 * time.Second

// initialMessages is every mailbox's size before the first sync.
const initialMessages = 3

// cluster is everything the test runs.
type cluster struct {
	t        *testing.T
	bins     binaries
	natsURL  string
	storeAdr string
	// serviceTokenFile holds the store's service token, the replicas'
	// --token-file.
	serviceTokenFile string
	accounts         mailbusv1.AccountServiceClient
	boxes            mailbusv1.MailboxServiceClient
	ingest           mailbusv1.IngestServiceClient
	js               jetstream.JetStream

	imap *imapUpstream
	pop  *pop3test.Server

	imapIDs map[string]string // IMAP user → account id
	popIDs  map[string]string // POP3 user → account id

	mu       sync.Mutex
	replicas map[string]*proc          // by replica id, live or not
	created  map[string]map[string]int // account → subject → message.created events
	sent     map[string]int            // account → messages delivered upstream
}

// TestScaleOut runs three replicas of mailbus-imapsync and of
// mailbus-pop3fetcher as processes, sharing the accounts through leases
// in JetStream KV (an embedded NATS server), with a mailbus-store process
// on SQLite, against an imapmemserver and a fake POP3 server in this
// process. The servers' own view decides: an IMAP session is attributed
// to the replica process that holds its socket (/proc), and the fake POP3
// server counts logins refused because another session held the maildrop.
//
//  1. Every account is synced, each IMAP user has sessions from exactly
//     one replica, every replica works some, no maildrop is ever opened
//     twice at once.
//  2. kill -9 of one replica of each: its accounts are taken over (the
//     time is logged against the lease TTL), new mail in every mailbox
//     arrives once: the store and the JetStream events have each message
//     exactly once.
//  3. A replica is added: the accounts that move all move to it, as many
//     as rendezvous hashing gives it (about a third), and the others stay.
//  4. SIGSTOP of one replica for longer than the lease TTL: the others
//     take its accounts over and sync new mail; after SIGCONT it does not
//     write for them (the store refuses a stale lease token) and nothing
//     is doubled.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a store, six fetcher processes and NATS")
	}
	n := defaultAccounts
	if v := os.Getenv("MAILBUS_SCALEOUT_ACCOUNTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 3 {
			t.Fatalf("MAILBUS_SCALEOUT_ACCOUNTS=%q: want a count of at least 3", v)
		}
	}
	c := startCluster(t, n)

	// 1. Three replicas of each.
	for _, id := range []string{"a", "b", "c"} {
		c.startReplica("imap-" + id)
		c.startReplica("pop-" + id)
	}
	c.waitSynced("first sync")
	c.waitOwners("first sync", "imap-a", "imap-b", "imap-c")
	perReplica := map[string]int{}
	for _, o := range c.imap.ownersNow() {
		perReplica[o]++
	}
	t.Logf("IMAP accounts per replica after the first sync: %v", perReplica)
	for _, id := range []string{"imap-a", "imap-b", "imap-c"} {
		if perReplica[id] == 0 {
			t.Errorf("replica %s works no account", id)
		}
	}
	c.checkOnce("first sync")
	c.checkNoOverlap("first sync")

	// 2. kill -9 of one replica of each service.
	before := c.imap.ownersNow()
	killed := time.Now()
	c.replica("imap-a").kill9()
	c.replica("pop-a").kill9()
	c.deliverAll(1)
	c.waitOwners("after kill -9", "imap-b", "imap-c")
	c.waitSynced("after kill -9")
	var takeover time.Duration
	moved := 0
	for user, o := range before {
		if o != "imap-a" {
			continue
		}
		moved++
		takeover = max(takeover, c.imap.firstLoginAfter(user, killed).at.Sub(killed))
	}
	t.Logf("kill -9: the last of imap-a's %d IMAP accounts was logged in to by another replica %v after the kill (lease TTL %v)", moved, takeover.Round(10*time.Millisecond), leaseTTL)
	c.checkStayed("after kill -9", before, "imap-a")
	c.checkOnce("after kill -9")
	c.checkNoOverlap("after kill -9")

	// 3. A replica is added.
	before = c.imap.ownersNow()
	c.startReplica("imap-d")
	c.startReplica("pop-d")
	c.waitOwners("after adding imap-d", "imap-b", "imap-c", "imap-d")
	after := c.imap.ownersNow()
	moved = 0
	for user, o := range after {
		if before[user] == o {
			continue
		}
		moved++
		if o != "imap-d" {
			t.Errorf("%s moved from %s to %s, not to the new replica", user, before[user], o)
		}
	}
	t.Logf("adding a third replica moved %d of %d IMAP accounts (rendezvous hashing)", moved, n)
	if moved < n/6 || moved > n/2 {
		t.Errorf("adding a third replica moved %d of %d accounts, want about a third", moved, n)
	}
	c.deliverAll(1)
	c.waitSynced("after adding a replica")
	c.checkOnce("after adding a replica")
	c.checkNoOverlap("after adding a replica")

	// 4. SIGSTOP longer than the lease TTL, then SIGCONT.
	before = c.imap.ownersNow()
	frozen := c.replica("imap-b")
	frozenPOP := c.replica("pop-b")
	staleIMAP := c.leaseTokens("imapsync", "imap-b")
	stalePOP := c.leaseTokens("pop3fetcher", "pop-b")
	c.imap.setFrozen(frozen.pid(), true)
	frozen.signal(syscall.SIGSTOP)
	frozenPOP.signal(syscall.SIGSTOP)
	stopped := time.Now()
	eventually(t, "imap-b's accounts taken over while it is stopped", 2*time.Minute, func() bool {
		for user, o := range before {
			if o == "imap-b" && !strings.Contains(strings.ReplaceAll(c.imap.owner(user), "imap-b", ""), "imap-") {
				return false
			}
		}
		return true
	})
	t.Logf("SIGSTOP: imap-b's accounts taken over within %v (lease TTL %v)", time.Since(stopped).Round(10*time.Millisecond), leaseTTL)
	c.deliverAll(1)
	c.waitSynced("while a replica is stopped")
	c.checkOnce("while a replica is stopped")
	eventually(t, "pop-b's accounts taken over while it is stopped", 2*time.Minute, func() bool {
		taken := c.leaseTokens("pop3fetcher", "")
		for id, tok := range stalePOP {
			if taken[id] <= tok {
				return false
			}
		}
		return true
	})
	c.checkStaleRefused(staleIMAP, stalePOP)
	frozen.signal(syscall.SIGCONT)
	frozenPOP.signal(syscall.SIGCONT)
	c.imap.setFrozen(frozen.pid(), false)
	// It comes back as a member and gets its share again, by handoff.
	c.waitOwners("after SIGCONT", "imap-b", "imap-c", "imap-d")
	c.deliverAll(1)
	c.waitSynced("after SIGCONT")
	c.checkOnce("after SIGCONT")
	for _, p := range []*proc{frozen, frozenPOP} {
		m := scrape(t, p.metrics)
		t.Logf("%s after SIGCONT: %v workers stopped by a STALE_LEASE refusal from the store (the rest stopped on their lease's local deadline)",
			p.name, m["mailbus_imapsync_stale_lease_stops_total"]+m["mailbus_pop3_stale_lease_stops_total"])
	}
	for _, v := range c.imap.takeViolations() {
		t.Errorf("IMAP server saw two replicas at once: %s", v)
	}
}

// startCluster starts NATS, the store and the upstream servers, with n
// IMAP and n POP3 accounts of initialMessages messages each.
func startCluster(t *testing.T, n int) *cluster {
	c := &cluster{t: t, replicas: map[string]*proc{}, created: map[string]map[string]int{}, sent: map[string]int{},
		imapIDs: map[string]string{}, popIDs: map[string]string{}}
	c.bins = build(t)

	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: t.TempDir(), Port: -1, Host: "127.0.0.1", NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	c.natsURL = ns.ClientURL()

	c.storeAdr = freeAddr(t)
	storeData := filepath.Join(t.TempDir(), "data")
	c.serviceTokenFile = filepath.Join(t.TempDir(), "service.token")
	st := start(t, "store", c.bins.store, []string{"MAILBUS_SECRET_KEY=" + storeKey()},
		"--listen", c.storeAdr, "--metrics-listen", "-", "--data", storeData, "--nats", c.natsURL, "--log-level", "warn",
		"--service-token-file", c.serviceTokenFile)
	waitServing(t, st, c.storeAdr)
	// The test manages accounts as an admin and checks fencing as a
	// fetcher (IngestService takes only service tokens).
	admin := dialStore(t, c.storeAdr, filepath.Join(storeData, "admin.token"))
	c.accounts = mailbusv1.NewAccountServiceClient(admin)
	c.boxes = mailbusv1.NewMailboxServiceClient(admin)
	c.ingest = mailbusv1.NewIngestServiceClient(dialStore(t, c.storeAdr, c.serviceTokenFile))

	nc, err := nats.Connect(c.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}

	c.imap = startIMAP(t, c.imapPIDs)
	var mailboxes []pop3test.Option
	for i := range n {
		user := fmt.Sprintf("p%03d", i)
		var msgs []pop3test.Message
		for j := range initialMessages {
			msgs = append(msgs, pop3test.Message{UID: fmt.Sprintf("%s-%d", user, j), Data: message(user, j)})
		}
		mailboxes = append(mailboxes, pop3test.WithMailbox(user, "secret", msgs...))
	}
	// A real POP3 server ends a silent session after its autologout timer
	// (RFC 1939: at least 10 minutes). A replica SIGSTOPped inside a
	// session holds that session's maildrop lock until then, and the
	// replica that takes the account over gets [IN-USE] meanwhile: the
	// takeover waits for the server, not for the lease. The test's server
	// uses a short timer so that the wait fits in the test (a CI run saw
	// the account starved for 3 minutes without one); it is long enough
	// that a working session, even on a loaded machine, is not cut.
	mailboxes = append(mailboxes, pop3test.WithAutologout(popAutologout))
	c.pop = pop3test.NewServer(t, mailboxes...)

	ctx := context.Background()
	for i := range n {
		user := fmt.Sprintf("i%03d", i)
		c.imap.addUser(t, user, "secret")
		for j := range initialMessages {
			c.imap.deliver(t, user, message(user, j))
		}
		c.imapIDs[user] = c.createAccount(ctx, user, mailbusv1.Protocol_PROTOCOL_IMAP, c.imap.addr)
		c.sent[c.imapIDs[user]] = initialMessages
		pu := fmt.Sprintf("p%03d", i)
		c.popIDs[pu] = c.createAccount(ctx, pu, mailbusv1.Protocol_PROTOCOL_POP3, c.pop.Addr())
		c.sent[c.popIDs[pu]] = initialMessages
	}
	c.collectEvents()
	return c
}

func message(user string, i int) []byte {
	return fmt.Appendf(nil, "From: sender@example.org\r\nTo: %s@example.org\r\nSubject: %s message %d\r\nMessage-ID: <%s.%d@example.org>\r\nDate: Mon, 02 Jan 2006 15:04:05 +0000\r\n\r\nBody of message %d for %s.\r\n", user, user, i, user, i, i, user)
}

func (c *cluster) createAccount(ctx context.Context, user string, proto mailbusv1.Protocol, addr string) string {
	host, port, _ := strings.Cut(addr, ":")
	p, _ := strconv.Atoi(port)
	resp, err := c.accounts.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: user, Protocol: proto, Host: host, Port: uint32(p), Security: mailbusv1.Security_SECURITY_NONE,
		Username: user, Secret: "secret", PollInterval: durationpb.New(time.Second),
	}})
	if err != nil {
		c.t.Fatalf("create account %s: %v", user, err)
	}
	return resp.Account.Id
}

// collectEvents counts message.created events per account and subject
// from JetStream, for the whole test.
func (c *cluster) collectEvents() {
	ctx, cancel := context.WithCancel(context.Background())
	c.t.Cleanup(cancel)
	var cons jetstream.Consumer
	eventually(c.t, "the event stream", time.Minute, func() bool {
		var err error
		cons, err = c.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.SubjectPrefix + ".>"}})
		return err == nil
	})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		ev, err := events.Unmarshal(m.Data())
		if err != nil || ev.GetMessageCreated() == nil {
			return
		}
		subject := ev.GetMessageCreated().GetMessage().GetEnvelope().GetSubject()
		c.mu.Lock()
		if c.created[ev.AccountId] == nil {
			c.created[ev.AccountId] = map[string]int{}
		}
		c.created[ev.AccountId][subject]++
		c.mu.Unlock()
	})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(cc.Stop)
}

// startReplica starts "imap-x" (mailbus-imapsync) or "pop-x"
// (mailbus-pop3fetcher) as one replica of its service.
func (c *cluster) startReplica(id string) *proc {
	c.t.Helper()
	bin := c.bins.imapsync
	if strings.HasPrefix(id, "pop-") {
		bin = c.bins.pop3fetcher
	}
	metrics := freeAddr(c.t)
	p := start(c.t, id, bin, nil, "--store", c.storeAdr, "--token-file", c.serviceTokenFile, "--nats", c.natsURL, "--listen", freeAddr(c.t), "--metrics-listen", metrics,
		"--ownership", "--replica-id", id, "--lease-ttl", leaseTTL.String(), "--host-rate", "500", "--host-burst", "100", "--log-level", "info")
	p.metrics = metrics
	c.mu.Lock()
	c.replicas[id] = p
	c.mu.Unlock()
	return p
}

func (c *cluster) replica(id string) *proc {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.replicas[id]
}

// imapPIDs maps the live IMAP replicas' pids to their ids.
func (c *cluster) imapPIDs() map[int]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[int]string{}
	for id, p := range c.replicas {
		if strings.HasPrefix(id, "imap-") && !p.exited() {
			out[p.pid()] = id
		}
	}
	return out
}

// deliverAll delivers k new messages to every IMAP user and maildrop.
func (c *cluster) deliverAll(k int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for user, id := range c.imapIDs {
		for range k {
			c.imap.deliver(c.t, user, message(user, c.sent[id]))
			c.sent[id]++
		}
	}
	for user, id := range c.popIDs {
		for range k {
			i := c.sent[id]
			c.pop.Deliver(user, pop3test.Message{UID: fmt.Sprintf("%s-%d", user, i), Data: message(user, i)})
			c.sent[id]++
		}
	}
}

// stored counts the account's messages in the store.
func (c *cluster) stored(id string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.boxes.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: id})
	if err != nil {
		return -1
	}
	total := 0
	for _, mb := range resp.Mailboxes {
		total += int(mb.TotalMessages)
	}
	return total
}

// waitSynced waits until the store has every message delivered, and the
// events for them.
func (c *cluster) waitSynced(phase string) {
	c.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		c.mu.Lock()
		sent := maps(c.sent)
		c.mu.Unlock()
		var behind []string
		for id, want := range sent {
			stored := c.stored(id)
			c.mu.Lock()
			events := len(c.created[id])
			c.mu.Unlock()
			if stored < want || events < want {
				behind = append(behind, fmt.Sprintf("account %s (%s): %d stored, events for %d, want %d", id, c.protocol(id), stored, events, want))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(behind)
			c.dumpReplicas()
			c.t.Fatalf("%s: after 3 minutes %d accounts lack messages in the store or on JetStream: %s", phase, len(behind), strings.Join(behind[:min(len(behind), 10)], "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// protocol names the account's protocol and user.
func (c *cluster) protocol(id string) string {
	for user, i := range c.imapIDs {
		if i == id {
			return "IMAP " + user
		}
	}
	for user, i := range c.popIDs {
		if i == id {
			return "POP3 " + user
		}
	}
	return "?"
}

func maps(m map[string]int) map[string]int {
	out := make(map[string]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// checkOnce checks that the store has each delivered message once and
// that JetStream carried one message.created event for each.
func (c *cluster) checkOnce(phase string) {
	c.t.Helper()
	c.mu.Lock()
	sent := maps(c.sent)
	c.mu.Unlock()
	for id, want := range sent {
		if got := c.stored(id); got != want {
			c.t.Errorf("%s: account %s has %d messages in the store, want %d", phase, id, got, want)
		}
		c.mu.Lock()
		subjects := c.created[id]
		for subject, k := range subjects {
			if k != 1 {
				c.t.Errorf("%s: account %s: %d message.created events for %q", phase, id, k, subject)
			}
		}
		if len(subjects) != want {
			c.t.Errorf("%s: account %s: events for %d messages, want %d", phase, id, len(subjects), want)
		}
		c.mu.Unlock()
	}
}

// checkNoOverlap fails on any moment seen so far at which two replicas
// worked one account.
func (c *cluster) checkNoOverlap(phase string) {
	c.t.Helper()
	for _, v := range c.imap.takeViolations() {
		c.t.Errorf("%s: IMAP server saw two replicas at once: %s", phase, v)
	}
	for user, k := range c.pop.InUseRefusals() {
		c.t.Errorf("%s: POP3 server refused %d logins to %s: another session held the maildrop", phase, k, user)
	}
}

// waitOwners waits until the IMAP server sees each user worked by the
// replica rendezvous hashing over members gives it, and by no other.
func (c *cluster) waitOwners(phase string, members ...string) {
	c.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var wrong []string
		for user, id := range c.imapIDs {
			want := ownership.Owner(id, members)
			if got := c.imap.owner(user); got != want {
				wrong = append(wrong, fmt.Sprintf("%s: %q, want %q", user, got, want))
			}
		}
		if len(wrong) == 0 {
			return
		}
		if time.Now().After(deadline) {
			sort.Strings(wrong)
			c.t.Fatalf("%s: %d IMAP accounts not worked by their replica alone after 2 minutes: %s", phase, len(wrong), strings.Join(wrong[:min(len(wrong), 10)], "; "))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkStayed checks that only the accounts of gone moved.
func (c *cluster) checkStayed(phase string, before map[string]string, gone string) {
	c.t.Helper()
	for user, o := range c.imap.ownersNow() {
		if before[user] != gone && before[user] != o {
			c.t.Errorf("%s: %s moved from %s to %s, though %s is still there", phase, user, before[user], o, before[user])
		}
	}
}

// leaseTokens returns the fencing tokens of the service's leases held by
// owner ("" for any), by account id, as the lease bucket holds them.
func (c *cluster) leaseTokens(service, owner string) map[string]uint64 {
	c.t.Helper()
	out := map[string]uint64{}
	eventually(c.t, "lease tokens of "+service, time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		holders, err := ownership.Holders(ctx, c.js, service)
		if err != nil {
			return false
		}
		clear(out)
		for account, h := range holders {
			if owner == "" || h.Owner == owner {
				out[account] = h.Token
			}
		}
		return true
	})
	return out
}

// checkStaleRefused makes the writes a stopped replica would make on
// resuming, with its lease tokens, after the others took its accounts:
// the store refuses each (STALE_LEASE) and keeps nothing of them
// (checkOnce later finds no extra message).
func (c *cluster) checkStaleRefused(imapTokens, popTokens map[string]uint64) {
	c.t.Helper()
	if len(imapTokens) == 0 || len(popTokens) == 0 {
		c.t.Fatalf("the stopped replicas held %d IMAP and %d POP3 leases", len(imapTokens), len(popTokens))
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for id, tok := range imapTokens {
		_, err := c.ingest.ClaimAccount(ctx, &mailbusv1.ClaimAccountRequest{AccountId: id, LeaseToken: tok})
		if !ownership.IsStaleLease(err) {
			c.t.Errorf("IMAP account %s: a claim with the stopped replica's token %d: %v, want STALE_LEASE", id, tok, err)
		}
	}
	for id, tok := range popTokens {
		stream, err := c.ingest.IngestMessages(ctx)
		if err != nil {
			c.t.Fatal(err)
		}
		raw := message("stale-write", 0)
		reqs := []*mailbusv1.IngestMessagesRequest{
			{Meta: &mailbusv1.IngestMeta{AccountId: id, Upstream: &mailbusv1.UpstreamId{Uidl: "stale-write"}, LeaseToken: tok, Size: uint64(len(raw))}, Data: raw, EndOfMessage: true},
			{Flush: true},
		}
		for _, r := range reqs {
			if err := stream.Send(r); err != nil {
				break // the answer says why
			}
		}
		stream.CloseSend()
		_, err = stream.Recv()
		if !ownership.IsStaleLease(err) {
			c.t.Errorf("POP3 account %s: a message ingested with the stopped replica's token %d: %v, want STALE_LEASE", id, tok, err)
		}
	}
	c.t.Logf("the store refused the stopped replicas' tokens for %d IMAP and %d POP3 accounts (STALE_LEASE)", len(imapTokens), len(popTokens))
}

// dumpReplicas asks every live replica for its goroutines (SIGQUIT) and,
// when MAILBUS_SCALEOUT_LOGDIR is set, writes each process's whole output
// there: what a stuck account was waiting for.
func (c *cluster) dumpReplicas() {
	dir := os.Getenv("MAILBUS_SCALEOUT_LOGDIR")
	if dir == "" {
		return
	}
	c.mu.Lock()
	procs := make([]*proc, 0, len(c.replicas))
	for _, p := range c.replicas {
		procs = append(procs, p)
	}
	c.mu.Unlock()
	for _, p := range procs {
		p.signal(syscall.SIGQUIT)
	}
	for _, p := range procs {
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
		}
		if err := os.WriteFile(filepath.Join(dir, p.name+".log"), []byte(p.out.String()), 0o644); err != nil {
			c.t.Logf("write %s's output: %v", p.name, err)
		}
	}
	c.t.Logf("replicas' output and goroutines in %s", dir)
}
