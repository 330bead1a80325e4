package natsperm_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailbus/mailbus/pkg/events"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/pkg/ownership"
)

const wait = 10 * time.Second

// startServer runs a nats-server configured with the rendered
// configuration of spec.
func startServer(t *testing.T, spec natsperm.Spec) *server.Server {
	t.Helper()
	conf, err := natsperm.Config(spec)
	if err != nil {
		t.Fatal(err)
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		t.Fatalf("the rendered configuration does not load: %v\n%s", err, conf)
	}
	opts.Host, opts.Port = "127.0.0.1", -1
	opts.JetStream, opts.StoreDir = true, t.TempDir()
	opts.NoSigs, opts.NoLog = true, true
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(wait) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(ns.Shutdown)
	return ns
}

// denied bounds a request the server is expected to refuse: a refused
// request gets no answer, so it ends at this deadline.
func denied(t *testing.T, ctx context.Context) context.Context {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	t.Cleanup(cancel)
	return ctx
}

// client is a connection that records the permission violations the
// server reports.
type client struct {
	nc *nats.Conn
	js jetstream.JetStream

	mu         sync.Mutex
	violations []string
}

// connect connects as a user; a service role's user (named like its
// role) uses the role's inbox prefix, as the services do.
func connect(t *testing.T, ns *server.Server, user, password string) *client {
	t.Helper()
	c := &client{}
	opts := []nats.Option{nats.UserInfo(user, password)}
	if slices.Contains(natsperm.Roles, user) {
		opts = append(opts, nats.CustomInboxPrefix(natsperm.InboxPrefix(user)))
	}
	nc, err := nats.Connect(ns.ClientURL(), append(opts,
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.violations = append(c.violations, err.Error())
			c.mu.Unlock()
		}))...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// violated reports whether the server refused something on subject.
func (c *client) violated(t *testing.T, subject string) bool {
	t.Helper()
	if err := c.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, v := range c.violations {
			if strings.Contains(v, "Permissions Violation") && strings.Contains(v, `"`+subject+`"`) {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func TestPermissionsOnARealServer(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	alice := natsperm.Consumer{User: "alice", Password: string(hash), AccountID: "1"}
	bob := natsperm.Consumer{User: "bob", Password: "bob-pw", AccountID: "2"}
	ns := startServer(t, natsperm.Spec{
		Services: []natsperm.ServiceUser{
			{Role: natsperm.RoleStore, User: "store", Password: "store-pw"},
			{Role: natsperm.RoleIMAPSync, User: "imapsync", Password: "imapsync-pw"},
			{Role: natsperm.RolePOP3Fetcher, User: "pop3fetcher", Password: "pop3fetcher-pw"},
			{Role: natsperm.RoleWebhooks, User: "webhooks", Password: "webhooks-pw"},
		},
		Consumers: []natsperm.Consumer{alice, bob},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	// The store manages the stream, publishes events and creates the
	// consumer users' durable consumers.
	store := connect(t, ns, "store", "store-pw")
	if _, err := events.EnsureStream(ctx, store.js, events.StreamConfig(1, 0, 0)); err != nil {
		t.Fatalf("store: ensure stream: %v", err)
	}
	for _, c := range []natsperm.Consumer{alice, bob} {
		if _, err := store.js.CreateOrUpdateConsumer(ctx, events.StreamName, c.JetStreamConsumer()); err != nil {
			t.Fatalf("store: consumer of %s: %v", c.User, err)
		}
	}
	imap := connect(t, ns, "imapsync", "imapsync-pw")
	wakeups, err := imap.nc.SubscribeSync(events.SubjectPrefix + ".>")
	if err != nil {
		t.Fatal(err)
	}
	aliceClient := connect(t, ns, "alice", "alice-pw")
	if aliceClient.js, err = jetstream.NewWithAPIPrefix(aliceClient.nc, natsperm.ConsumerAPIPrefix); err != nil {
		t.Fatal(err)
	}
	aliceLive, err := aliceClient.nc.SubscribeSync(alice.Subjects())
	if err != nil {
		t.Fatal(err)
	}
	if err := aliceClient.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := imap.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// Account 2's event first: had it reached alice's live subscription,
	// it would come before account 1's.
	for _, subj := range []string{"mailbus.events.2.message.created", "mailbus.events.1.message.created"} {
		if _, err := store.js.Publish(ctx, subj, []byte(subj)); err != nil {
			t.Fatalf("store: publish %s: %v", subj, err)
		}
	}
	store.nc.Publish("$KV.MAILBUS_LEASES_IMAPSYNC.1", []byte("x"))
	if !store.violated(t, "$KV.MAILBUS_LEASES_IMAPSYNC.1") {
		t.Error("the store may write imapsync's leases")
	}

	t.Run("imapsync sees every account's events (wake-ups)", func(t *testing.T) {
		for range 2 {
			if _, err := wakeups.NextMsg(wait); err != nil {
				t.Fatal(err)
			}
		}
	})

	t.Run("fetchers use their own ownership buckets only", func(t *testing.T) {
		for _, role := range []string{natsperm.RoleIMAPSync, natsperm.RolePOP3Fetcher} {
			c := connect(t, ns, role, role+"-pw")
			m, err := ownership.New(ctx, ownership.Config{JetStream: c.js, Service: role, ReplicaID: role + "-1"})
			if err != nil {
				t.Fatalf("%s: ownership: %v", role, err)
			}
			mctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- m.Run(mctx) }()
			lease, err := m.Acquire(ctx, "7")
			if err != nil {
				t.Fatalf("%s: acquire: %v", role, err)
			}
			if err := lease.Release(ctx); err != nil {
				t.Fatalf("%s: release: %v", role, err)
			}
			stop()
			<-done
			if _, err := c.js.Stream(denied(t, ctx), events.StreamName); err == nil {
				t.Errorf("%s may read the events stream", role)
			}
			// A consumer on the events stream named like one of the
			// fetcher's bucket streams (a position wildcard in the
			// bucket permissions once allowed it) is refused.
			for _, b := range []string{ownership.MembersBucket(role), ownership.LeaseBucket(role)} {
				if _, err := c.js.CreateOrUpdateConsumer(denied(t, ctx), events.StreamName, jetstream.ConsumerConfig{
					Name: "KV_" + b, FilterSubject: events.SubjectPrefix + ".>",
				}); err == nil {
					t.Errorf("%s may create a consumer on the events stream named KV_%s", role, b)
				}
				subj := "$JS.API.CONSUMER.CREATE." + events.StreamName + ".KV_" + b + "." + events.SubjectPrefix + ".>"
				if !c.violated(t, subj) {
					t.Errorf("%s: no permission violation for %s", role, subj)
				}
			}
			c.nc.Publish("mailbus.events.1.message.created", []byte("forged"))
			if !c.violated(t, "mailbus.events.1.message.created") {
				t.Errorf("%s may publish events", role)
			}
		}
		pop := connect(t, ns, natsperm.RolePOP3Fetcher, natsperm.RolePOP3Fetcher+"-pw")
		pop.nc.Publish("$KV.MAILBUS_LEASES_IMAPSYNC.1", []byte("x"))
		if !pop.violated(t, "$KV.MAILBUS_LEASES_IMAPSYNC.1") {
			t.Error("pop3fetcher may write imapsync's leases")
		}
	})

	t.Run("each service reads only its own inboxes", func(t *testing.T) {
		// The replies of another service (JetStream API answers, KV values)
		// arrive on its inboxes; a shared _INBOX.> let every service read
		// them (issue 16).
		for _, role := range natsperm.Roles {
			c := connect(t, ns, role, role+"-pw")
			for _, other := range natsperm.Roles {
				if other == role {
					continue
				}
				subj := natsperm.InboxPrefix(other) + ".>"
				if _, err := c.nc.SubscribeSync(subj); err != nil {
					t.Fatal(err)
				}
				if !c.violated(t, subj) {
					t.Errorf("%s may subscribe to %s's inboxes", role, other)
				}
			}
			if _, err := c.nc.SubscribeSync("_INBOX.>"); err != nil {
				t.Fatal(err)
			}
			if !c.violated(t, "_INBOX.>") {
				t.Errorf("%s may subscribe to every inbox", role)
			}
			// Its own inboxes work: a JetStream API request is answered.
			if _, err := c.js.AccountInfo(ctx); err != nil {
				t.Errorf("%s: a request with its own inbox: %v", role, err)
			}
		}
	})

	t.Run("webhooks reads the events through consumers of its own, its buckets and its redeliveries", func(t *testing.T) {
		c := connect(t, ns, natsperm.RoleWebhooks, natsperm.RoleWebhooks+"-pw")
		// What the webhooks service does (services/webhooks): an endpoint's
		// durable consumer, pinned to one replica, read one event at a time.
		cons, err := c.js.CreateOrUpdateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{
			Durable: "webhook-1", FilterSubjects: []string{"mailbus.events.1.>"}, AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1,
			PriorityPolicy: jetstream.PriorityPolicyPinned, PriorityGroups: []string{"webhooks"}, PinnedTTL: 5 * time.Second,
		})
		if err != nil {
			t.Fatalf("webhooks: an endpoint's consumer: %v", err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(wait), jetstream.FetchPriorityGroup("webhooks"))
		if err != nil {
			t.Fatal(err)
		}
		var seq uint64
		for m := range batch.Messages() {
			md, _ := m.Metadata()
			seq = md.Sequence.Stream
			if err := m.InProgress(); err != nil {
				t.Fatal(err)
			}
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("webhooks: ack: %v", err)
			}
		}
		if batch.Error() != nil || seq == 0 {
			t.Fatalf("webhooks: no event read (%v)", batch.Error())
		}
		st, err := c.js.Stream(ctx, events.StreamName)
		if err != nil {
			t.Fatalf("webhooks: the events stream's info: %v", err)
		}
		if _, err := st.GetMsg(ctx, seq); err != nil {
			t.Fatalf("webhooks: an event by sequence (redeliver): %v", err)
		}
		// A refused request gets no answer: it would end at the deadline.
		if err := st.UnpinConsumer(denied(t, ctx), "webhook-1", "webhooks"); err != nil {
			t.Errorf("webhooks: unpin its consumer (a replica that stops): %v", err)
		}
		if err := c.js.DeleteConsumer(ctx, events.StreamName, "webhook-1"); err != nil {
			t.Fatalf("webhooks: delete an endpoint's consumer: %v", err)
		}
		for _, b := range []string{natsperm.WebhookEndpointsBucket, natsperm.WebhookDeliveriesBucket} {
			kv, err := c.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: b, History: 1})
			if err != nil {
				t.Fatalf("webhooks: bucket %s: %v", b, err)
			}
			w, err := kv.Watch(ctx, "endpoint.*")
			if err != nil {
				t.Fatalf("webhooks: watch %s: %v", b, err)
			}
			if _, err := kv.Put(ctx, "endpoint.1", []byte("x")); err != nil {
				t.Fatalf("webhooks: put in %s: %v", b, err)
			}
			if _, err := kv.Get(ctx, "endpoint.1"); err != nil {
				t.Fatalf("webhooks: get from %s: %v", b, err)
			}
			keys, err := kv.ListKeysFiltered(ctx, "endpoint.*")
			if err != nil {
				t.Fatalf("webhooks: list %s: %v", b, err)
			}
			for range keys.Keys() {
			}
			if err := kv.Purge(ctx, "endpoint.1"); err != nil {
				t.Fatalf("webhooks: purge in %s: %v", b, err)
			}
			w.Stop()
		}
		rs, err := c.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: natsperm.WebhookRedeliveryStream,
			Subjects: []string{natsperm.WebhookRedeliverySubjects}, Retention: jetstream.WorkQueuePolicy})
		if err != nil {
			t.Fatalf("webhooks: the redelivery stream: %v", err)
		}
		if _, err := c.js.Publish(ctx, "mailbus.webhooks.redeliver.1", []byte("x")); err != nil {
			t.Fatalf("webhooks: queue a redelivery: %v", err)
		}
		rc, err := rs.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "webhooks-redeliver", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatalf("webhooks: the redelivery consumer: %v", err)
		}
		rb, err := rc.Fetch(1, jetstream.FetchMaxWait(wait))
		if err != nil {
			t.Fatal(err)
		}
		for m := range rb.Messages() {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("webhooks: ack a redelivery: %v", err)
			}
		}

		// And nothing that writes events or changes the events stream.
		c.nc.Publish("mailbus.events.1.message.created", []byte("forged"))
		if !c.violated(t, "mailbus.events.1.message.created") {
			t.Error("webhooks may publish events")
		}
		for _, req := range []string{"STREAM.UPDATE", "STREAM.DELETE", "STREAM.PURGE", "STREAM.MSG.DELETE"} {
			subj := "$JS.API." + req + "." + events.StreamName
			c.nc.Publish(subj, []byte("{}"))
			if !c.violated(t, subj) {
				t.Errorf("webhooks may send %s", subj)
			}
		}
		c.nc.Publish("$KV.MAILBUS_LEASES_IMAPSYNC.1", []byte("x"))
		if !c.violated(t, "$KV.MAILBUS_LEASES_IMAPSYNC.1") {
			t.Error("webhooks may write imapsync's leases")
		}
	})

	t.Run("a consumer user reads its account's events", func(t *testing.T) {
		cons, err := aliceClient.js.Consumer(ctx, events.StreamName, alice.User)
		if err != nil {
			t.Fatalf("alice: her consumer: %v", err)
		}
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for m := range batch.Messages() {
			got = append(got, m.Subject())
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatalf("ack: %v", err)
			}
		}
		if len(got) != 1 || got[0] != "mailbus.events.1.message.created" {
			t.Fatalf("alice read %v, want only account 1's event", got)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.AckFloor.Consumer != 1 {
			t.Fatalf("ack floor %d, want 1 (the acknowledgement reached the server)", info.AckFloor.Consumer)
		}
		m, err := aliceLive.NextMsg(wait)
		if err != nil {
			t.Fatal(err)
		}
		if m.Subject != "mailbus.events.1.message.created" {
			t.Fatalf("live: alice got %s first, want account 1's event", m.Subject)
		}
	})

	t.Run("a consumer user is refused everything else", func(t *testing.T) {
		c := aliceClient
		if _, err := c.js.Consumer(denied(t, ctx), events.StreamName, bob.User); err == nil {
			t.Error("alice opened bob's consumer")
		}
		if !c.violated(t, "MAILBUS.JS.API.CONSUMER.INFO.MAILBUS_EVENTS.bob") {
			t.Error("no permission violation for bob's consumer")
		}
		if _, err := c.js.Stream(denied(t, ctx), events.StreamName); err == nil {
			t.Error("alice read the stream's info")
		}
		if !c.violated(t, "MAILBUS.JS.API.STREAM.INFO.MAILBUS_EVENTS") {
			t.Error("no permission violation for the stream's info")
		}
		// Without the prefix: her own account's JetStream API, which has
		// no JetStream.
		plain, err := jetstream.New(c.nc)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := plain.Stream(denied(t, ctx), events.StreamName); err == nil {
			t.Error("alice read the stream's info through $JS.API")
		}
		if _, err := c.js.OrderedConsumer(denied(t, ctx), events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"mailbus.events.2.>"}}); err == nil {
			t.Error("alice created a consumer on account 2's events")
		}
		if _, err := c.js.CreateOrUpdateConsumer(denied(t, ctx), events.StreamName, alice.JetStreamConsumer()); err == nil {
			t.Error("alice created (or changed) a consumer herself")
		}
		if !c.violated(t, "MAILBUS.JS.API.CONSUMER.CREATE.MAILBUS_EVENTS.alice.mailbus.events.1.>") {
			t.Error("no permission violation for creating a consumer")
		}
		for _, subj := range []string{"mailbus.events.2.>", "mailbus.events.>", ">", "$KV.>"} {
			if _, err := c.nc.SubscribeSync(subj); err != nil {
				t.Fatal(err)
			}
			if !c.violated(t, subj) {
				t.Errorf("alice may subscribe to %s", subj)
			}
		}
		c.nc.Publish("mailbus.events.1.message.created", []byte("forged"))
		if !c.violated(t, "mailbus.events.1.message.created") {
			t.Error("alice may publish events")
		}
		direct := "$JS.API.DIRECT.GET.MAILBUS_EVENTS.mailbus.events.2.message.created"
		if _, err := c.nc.Request(direct, nil, time.Second); err == nil || !c.violated(t, direct) {
			t.Errorf("alice read a message of account 2 directly: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		_, err := nats.Connect(ns.ClientURL(), nats.UserInfo("alice", "bob-pw"))
		if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("err = %v, want an authorization error", err)
		}
	})
}

func TestConfigRefusesBadUsers(t *testing.T) {
	for _, c := range []natsperm.Consumer{
		{User: "a.b", Password: "p", AccountID: "1"},
		{User: "a>", Password: "p", AccountID: "1"},
		{User: "", Password: "p", AccountID: "1"},
		{User: "a", Password: "p", AccountID: "*"},
		{User: "a", Password: "", AccountID: "1"},
	} {
		if _, err := natsperm.Config(natsperm.Spec{Consumers: []natsperm.Consumer{c}}); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	if _, err := natsperm.Service("admin", ""); err == nil {
		t.Error("unknown role accepted")
	}
}
