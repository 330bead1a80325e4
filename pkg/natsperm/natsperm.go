// Package natsperm states which NATS subjects each mailbus role may use and
// renders them as nats-server configuration, so that the embedded server of
// `mailbus serve` and an external NATS cluster grant exactly the same.
//
// The layout (decision 17):
//
//   - NATS account MAILBUS (JetStream enabled) holds the events stream
//     MAILBUS_EVENTS, the ownership KV buckets and one user per service:
//     the store publishes events and manages the stream (and the durable
//     consumers of the consumer users), imapsync and pop3fetcher use their
//     own KV buckets of pkg/ownership, imapsync also subscribes to the
//     events (write-back wake-ups), and webhooks reads the events through
//     consumers of its own (an endpoint's webhook-<id>) and keeps its two
//     KV buckets and its redelivery queue. Each service user has inboxes of its
//     own (InboxPrefix), which its clients set with nats.CustomInboxPrefix.
//   - Each events consumer user lives in a NATS account of its own,
//     CONSUMER_<user>, that imports from MAILBUS only what reading one
//     durable pull consumer takes: CONSUMER.INFO and CONSUMER.MSG.NEXT of
//     the consumer named like the user, its acknowledgements, and the live
//     subjects mailbus.events.<account>.> (mailbus.events.> for a user of
//     all accounts). The consumer itself (with the same filter) is
//     created by mailbus, never by the user:
//     a CONSUMER.CREATE request chooses the delivery subject in its body,
//     which no subject permission can check, and a separate NATS account
//     keeps every reply and delivery the user asks for inside that account.
package natsperm

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	"github.com/mailbus/mailbus/pkg/ownership"
)

// ServiceAccount is the NATS account of the services and the events stream.
const ServiceAccount = "MAILBUS"

// The service roles.
const (
	RoleStore       = "store"
	RoleIMAPSync    = "imapsync"
	RolePOP3Fetcher = "pop3fetcher"
	RoleWebhooks    = "webhooks"
)

// Roles are the service roles.
var Roles = []string{RoleStore, RoleIMAPSync, RolePOP3Fetcher, RoleWebhooks}

// The JetStream names of the webhooks service (services/webhooks, which
// pkg cannot import; services/mailbus tests that they agree): its KV
// buckets, and the work-queue stream of redeliveries with its subjects.
const (
	WebhookEndpointsBucket    = "MAILBUS_WEBHOOKS"
	WebhookDeliveriesBucket   = "MAILBUS_WEBHOOK_DELIVERIES"
	WebhookRedeliveryStream   = "MAILBUS_WEBHOOK_REDELIVERIES"
	WebhookRedeliverySubjects = "mailbus.webhooks.redeliver.>"
)

// InboxPrefix is the reply subject prefix of a service role's NATS
// connections, to be set with nats.CustomInboxPrefix. Each service user
// may subscribe only to its own inboxes, so that one service cannot read
// the replies another gets (JetStream API answers, KV values and watches,
// which arrive on inbox subjects); a shared "_INBOX.>" allowed that.
func InboxPrefix(role string) string { return "_INBOX." + role }

// Permissions are the subjects a user may publish and subscribe to; all
// others are denied.
type Permissions struct {
	Publish, Subscribe []string
}

// Service returns the permissions of a service role's user on the events
// stream stream (empty means events.StreamName).
func Service(role, stream string) (Permissions, error) {
	if stream == "" {
		stream = events.StreamName
	}
	events := events.SubjectPrefix + ".>"
	switch role {
	case RoleStore:
		return Permissions{
			Publish: []string{
				events,
				"$JS.API.INFO",
				"$JS.API.STREAM.INFO." + stream,
				"$JS.API.STREAM.CREATE." + stream,
				"$JS.API.STREAM.UPDATE." + stream,
				// The durable consumers of the consumer users.
				"$JS.API.CONSUMER.CREATE." + stream + ".>",
				"$JS.API.CONSUMER.DURABLE.CREATE." + stream + ".*",
				"$JS.API.CONSUMER.INFO." + stream + ".*",
				"$JS.API.CONSUMER.DELETE." + stream + ".*",
			},
			Subscribe: []string{events, InboxPrefix(role) + ".>"},
		}, nil
	case RoleIMAPSync, RolePOP3Fetcher:
		p := Permissions{Publish: []string{"$JS.API.INFO"}, Subscribe: []string{InboxPrefix(role) + ".>"}}
		for _, b := range []string{ownership.MembersBucket(role), ownership.LeaseBucket(role)} {
			p.Publish = append(p.Publish, bucketAPI(b)...)
		}
		if role == RoleIMAPSync {
			p.Subscribe = append(p.Subscribe, events)
		}
		return p, nil
	case RoleWebhooks:
		// The endpoints' durable consumers on the events stream
		// (webhook-<id>, pinned to one replica), the two buckets and the
		// redelivery work queue with its consumer.
		p := Permissions{Publish: []string{"$JS.API.INFO", WebhookRedeliverySubjects}, Subscribe: []string{InboxPrefix(role) + ".>"}}
		p.Publish = append(p.Publish, streamReadAPI(stream)...)
		p.Publish = append(p.Publish, "$JS.API.CONSUMER.UNPIN."+stream+".*")
		for _, b := range []string{WebhookEndpointsBucket, WebhookDeliveriesBucket} {
			p.Publish = append(p.Publish, bucketAPI(b)...)
		}
		r := WebhookRedeliveryStream
		p.Publish = append(p.Publish, "$JS.API.STREAM.CREATE."+r, "$JS.API.STREAM.UPDATE."+r)
		p.Publish = append(p.Publish, streamReadAPI(r)...)
		return p, nil
	}
	return Permissions{}, fmt.Errorf("natsperm: unknown role %q: want one of %s", role, strings.Join(Roles, ", "))
}

// bucketAPI is what a KV client of bucket b publishes: its subjects and
// the JetStream API requests it makes on the bucket's stream.
func bucketAPI(b string) []string {
	s := "KV_" + b
	return append([]string{
		"$KV." + b + ".>",
		"$JS.API.STREAM.CREATE." + s,
		"$JS.API.STREAM.UPDATE." + s,
		"$JS.API.STREAM.PURGE." + s,
	}, streamReadAPI(s)...)
}

// streamReadAPI are the JetStream API requests of a client that reads
// stream s through consumers of its own: each spelled out, since a
// wildcard in a position before the stream name would also match the
// same request on another stream (CONSUMER.CREATE on MAILBUS_EVENTS with
// a consumer named like a bucket's stream would read every account's
// events).
func streamReadAPI(s string) []string {
	return []string{
		"$JS.API.STREAM.INFO." + s,
		"$JS.API.STREAM.MSG.GET." + s,
		"$JS.API.DIRECT.GET." + s, "$JS.API.DIRECT.GET." + s + ".>",
		"$JS.API.CONSUMER.CREATE." + s, "$JS.API.CONSUMER.CREATE." + s + ".>",
		"$JS.API.CONSUMER.DURABLE.CREATE." + s + ".*",
		"$JS.API.CONSUMER.INFO." + s + ".*",
		"$JS.API.CONSUMER.DELETE." + s + ".*",
		"$JS.API.CONSUMER.MSG.NEXT." + s + ".*",
		"$JS.ACK." + s + ".>", "$JS.FC." + s + ".>",
	}
}

// Consumer is an events consumer user: it reads one mailbus account's
// events, or every account's (AllAccounts), through the durable pull
// consumer named like the user.
type Consumer struct {
	// User is the NATS user name; it also names the durable consumer and
	// the user's NATS account (ConsumerAccount).
	User string `json:"user"`
	// Password is the password, or its bcrypt hash ("$2a$...").
	Password string `json:"password"`
	// AccountID is the mailbus account whose events the user reads;
	// empty with AllAccounts.
	AccountID string `json:"account_id,omitempty"`
	// AllAccounts makes a user that reads the events of every account,
	// present and future (mailbus.events.>), and still nothing else.
	AllAccounts bool `json:"all_accounts,omitempty"`
}

var validUser = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate checks the user name (it becomes a subject token and a NATS
// account name) and the account id.
func (c Consumer) Validate() error {
	if !validUser.MatchString(c.User) {
		return fmt.Errorf("natsperm: user %q: want 1 to 64 letters, digits, - or _", c.User)
	}
	switch {
	case c.AllAccounts && c.AccountID != "":
		return fmt.Errorf("natsperm: user %q: an account id (%s) and all accounts: want one", c.User, c.AccountID)
	case c.AllAccounts:
	case c.AccountID == "" || strings.Trim(c.AccountID, "0123456789") != "":
		return fmt.Errorf("natsperm: account id %q: want a number", c.AccountID)
	}
	if c.Password == "" {
		return errors.New("natsperm: empty password")
	}
	return nil
}

// ConsumerAccount is the NATS account of a consumer user.
func ConsumerAccount(user string) string { return "CONSUMER_" + user }

// Subjects returns the subjects the user reads: the account's,
// mailbus.events.<id>.>, or with AllAccounts every event's,
// mailbus.events.>.
func (c Consumer) Subjects() string {
	if c.AllAccounts {
		return events.AllSubjects
	}
	return events.AccountSubjects(c.AccountID)
}

// Scope describes what the user reads, for people: "account 7" or "all
// accounts".
func (c Consumer) Scope() string {
	if c.AllAccounts {
		return "all accounts"
	}
	return "account " + c.AccountID
}

// JetStreamConsumer is the configuration of the user's durable pull
// consumer on the events stream, which mailbus creates.
func (c Consumer) JetStreamConsumer() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.User,
		Description:   "mailbus events of " + c.Scope() + " for NATS user " + c.User,
		FilterSubject: c.Subjects(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
	}
}

// ConsumerAPIPrefix is the JetStream API prefix of a consumer user's
// connection: its account imports the two API subjects it may use under
// this prefix (an account's own $JS.API is answered by the server itself),
// so clients use jetstream.NewWithAPIPrefix(nc, ConsumerAPIPrefix).
const ConsumerAPIPrefix = "MAILBUS.JS.API"

// Import is one service (request and reply) a consumer's account
// imports from ServiceAccount: Subject there, seen as Local in the
// consumer's account. Streamed services answer with several messages.
type Import struct {
	Subject, Local string
	Streamed       bool
}

// Imports are what the consumer's account imports from ServiceAccount on
// the events stream stream (empty means events.StreamName): services, and
// the live events (streamSubject, imported as is). ServiceAccount exports
// each to the consumer's account alone. Config renders them, and the
// embedded server of mailbus serve adds them to a running server.
func (c Consumer) Imports(stream string) (services []Import, streamSubject string) {
	if stream == "" {
		stream = events.StreamName
	}
	info := "CONSUMER.INFO." + stream + "." + c.User
	next := "CONSUMER.MSG.NEXT." + stream + "." + c.User
	ack := "$JS.ACK." + stream + "." + c.User + ".>"
	return []Import{
		{Subject: "$JS.API." + info, Local: ConsumerAPIPrefix + "." + info},
		{Subject: "$JS.API." + next, Local: ConsumerAPIPrefix + "." + next, Streamed: true},
		{Subject: ack, Local: ack},
	}, c.Subjects()
}

// Permissions are the consumer user's permissions inside its own account.
func (c Consumer) Permissions(stream string) Permissions {
	if stream == "" {
		stream = events.StreamName
	}
	services, live := c.Imports(stream)
	var p Permissions
	for _, s := range services {
		p.Publish = append(p.Publish, s.Local)
	}
	p.Subscribe = []string{"_INBOX.>", live}
	return p
}

// ServiceUser is a service's NATS user.
type ServiceUser struct {
	Role, User, Password string
}

// Spec is everything the configuration grants.
type Spec struct {
	// Stream is the events stream; empty means events.StreamName.
	Stream    string
	Services  []ServiceUser
	Consumers []Consumer
}

// Config renders spec as the accounts block of a nats-server
// configuration file. The same text configures the embedded server.
func Config(spec Spec) (string, error) {
	stream := spec.Stream
	if stream == "" {
		stream = events.StreamName
	}
	var b strings.Builder
	b.WriteString("accounts {\n")
	fmt.Fprintf(&b, "  %s {\n    jetstream: enabled\n    users: [\n", ServiceAccount)
	for _, u := range spec.Services {
		p, err := Service(u.Role, stream)
		if err != nil {
			return "", err
		}
		writeUser(&b, "      ", u.User, u.Password, p)
	}
	b.WriteString("    ]\n")
	consumers := append([]Consumer(nil), spec.Consumers...)
	sort.Slice(consumers, func(i, j int) bool { return consumers[i].User < consumers[j].User })
	seen := map[string]bool{}
	for _, c := range consumers {
		if err := c.Validate(); err != nil {
			return "", err
		}
		if seen[c.User] {
			return "", fmt.Errorf("natsperm: user %q twice", c.User)
		}
		seen[c.User] = true
	}
	if len(consumers) > 0 {
		b.WriteString("    exports: [\n")
		for _, c := range consumers {
			services, live := c.Imports(stream)
			acc := ConsumerAccount(c.User)
			for _, s := range services {
				resp := ""
				if s.Streamed {
					resp = `, response_type: "stream"`
				}
				fmt.Fprintf(&b, "      {service: %q%s, accounts: [%q]}\n", s.Subject, resp, acc)
			}
			fmt.Fprintf(&b, "      {stream: %q, accounts: [%q]}\n", live, acc)
		}
		b.WriteString("    ]\n")
	}
	b.WriteString("  }\n")
	for _, c := range consumers {
		services, live := c.Imports(stream)
		fmt.Fprintf(&b, "  %s {\n    users: [\n", ConsumerAccount(c.User))
		writeUser(&b, "      ", c.User, c.Password, c.Permissions(stream))
		b.WriteString("    ]\n    imports: [\n")
		for _, s := range services {
			fmt.Fprintf(&b, "      {service: {account: %q, subject: %q}, to: %q}\n", ServiceAccount, s.Subject, s.Local)
		}
		fmt.Fprintf(&b, "      {stream: {account: %q, subject: %q}}\n", ServiceAccount, live)
		b.WriteString("    ]\n  }\n")
	}
	b.WriteString("}\n")
	return b.String(), nil
}

func writeUser(b *strings.Builder, indent, user, password string, p Permissions) {
	fmt.Fprintf(b, "%s{user: %q, password: %q, permissions: {\n", indent, user, password)
	fmt.Fprintf(b, "%s  publish: {allow: %s}\n", indent, quoteList(p.Publish))
	fmt.Fprintf(b, "%s  subscribe: {allow: %s}\n", indent, quoteList(p.Subscribe))
	fmt.Fprintf(b, "%s}}\n", indent)
}

func quoteList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
