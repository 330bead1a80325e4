package imapsync_test

import (
	"context"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/dovecottest"
	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapsync"
)

// BenchmarkFreshness: the time from an upstream APPEND on Dovecot until
// its message.created event is on JetStream (what `mailbus watch` shows),
// by folder type: INBOX IDLEd on a server that pushes, a folder that is
// polled (not IDLEd), and INBOX IDLEd on a server that advertises IDLE but
// never pushes (Dovecot behind a proxy that drops what IDLE carries),
// before and after imapsync finds it out. The poll interval is
// MAILBUS_BENCH_POLL (default 5s), trials per type
// MAILBUS_BENCH_FRESHNESS_TRIALS (default 12). Before each APPEND the
// benchmark waits a random part of the poll interval, so that the APPEND
// does not fall at the same point of the poll cycle every time.
func BenchmarkFreshness(b *testing.B) {
	poll := 5 * time.Second
	if v := os.Getenv("MAILBUS_BENCH_POLL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Second {
			b.Fatalf("MAILBUS_BENCH_POLL=%q: want a duration of at least 1s", v)
		}
		poll = d
	}
	trials := 12
	if v := os.Getenv("MAILBUS_BENCH_FRESHNESS_TRIALS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("MAILBUS_BENCH_FRESHNESS_TRIALS=%q: want a count of at least 1", v)
		}
		trials = n
	}
	s := dovecottest.Start(b, &dovecottest.Options{Users: []dovecottest.User{{Name: "alice", Password: "secret"}, {Name: "bob", Password: "secret"}}})
	for _, u := range []string{"alice", "bob"} {
		if err := s.Deliver(u, "INBOX", testMessage(0, "INBOX")); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Deliver("alice", "Archive", testMessage(0, "Archive")); err != nil {
		b.Fatal(err)
	}
	e := startStore(b)
	proxy := startNoPushProxy(b, s.IMAPAddr())
	withPoll := func(a *mailbusv1.Account) { a.PollInterval = durationpb.New(poll) }
	pushing := e.createAccount(b, s.IMAPAddr(), mailbusv1.Security_SECURITY_NONE, "alice", "secret", withPoll)
	silent := e.createAccount(b, proxy.addr, mailbusv1.Security_SECURITY_NONE, "bob", "secret", withPoll)
	startSync(b, e, func(c *imapsync.Config) { c.Logger = nil })
	for _, a := range []*mailbusv1.Account{pushing, silent} {
		waitFor(b, "initial sync", func() bool {
			return e.account(b, a.Id).GetStatus().GetState() == mailbusv1.SyncState_SYNC_STATE_IDLE
		})
	}
	waitFor(b, "the silent server's INBOX IDLEd", func() bool { return proxy.idles.Load() > 0 })

	// message.created events on JetStream, by account.
	created := map[string]chan time.Time{pushing.Id: make(chan time.Time, 64), silent.Id: make(chan time.Time, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cons, err := e.js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{events.AccountSubjects(pushing.Id), events.AccountSubjects(silent.Id)}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		b.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		at := time.Now()
		ev, err := events.Unmarshal(m.Data())
		if err != nil || ev.GetMessageCreated() == nil {
			return
		}
		if ch := created[ev.GetAccountId()]; ch != nil {
			ch <- at
		}
	})
	if err != nil {
		b.Fatal(err)
	}
	defer cc.Stop()

	alice := dialPlain(b, s.IMAPAddr(), "alice", "secret")
	bob := dialPlain(b, s.IMAPAddr(), "bob", "secret")
	r := rand.New(rand.NewPCG(17, 22))
	next := 100
	measure := func(what string, appendTo func(int), ch chan time.Time) []time.Duration {
		var out []time.Duration
		for range trials {
			time.Sleep(time.Duration(r.Int64N(int64(poll))))
			next++
			t0 := time.Now()
			appendTo(next)
			select {
			case at := <-ch:
				out = append(out, at.Sub(t0))
			case <-time.After(poll + waitLong):
				b.Fatalf("%s: message %d never seen", what, next)
			}
		}
		return out
	}
	b.ResetTimer()
	for range b.N {
		rows := []struct {
			name string
			d    []time.Duration
		}{
			{"INBOX, IDLE (Dovecot pushes)", measure("IDLE", func(i int) { appendMsg(b, alice, "INBOX", testMessage(i, "INBOX")) }, created[pushing.Id])},
			{"Archive, polled", measure("polled", func(i int) { appendMsg(b, alice, "Archive", testMessage(i, "Archive")) }, created[pushing.Id])},
			{"INBOX, IDLE that never pushes", measure("never pushes", func(i int) { appendMsg(b, bob, "INBOX", testMessage(i, "INBOX")) }, created[silent.Id])},
		}
		b.Logf("poll interval %s, %d trials per row, load %s", poll, trials, loadAverage())
		for _, row := range rows {
			p50, worst := percentile(row.d, 50), percentile(row.d, 100)
			b.Logf("%-32s p50 %8.1f ms  max %8.1f ms", row.name, ms(p50), ms(worst))
			key := strings.NewReplacer(" ", "-", ",", "", "(", "", ")", "").Replace(row.name)
			b.ReportMetric(ms(p50), key+"-p50-ms")
			b.ReportMetric(ms(worst), key+"-max-ms")
		}
	}
}

// loadAverage is the first line of /proc/loadavg, or "?".
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil || len(b) == 0 {
		return "?"
	}
	return string(b[:len(b)-1])
}
