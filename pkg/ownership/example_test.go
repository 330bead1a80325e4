package ownership_test

import (
	"context"
	"log"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/accountrun"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/hostlimit"
	"github.com/mailbus/mailbus/pkg/ownership"
)

// How a fetcher runs only its share of the accounts, each under a lease,
// pacing its connections per upstream host.
func ExampleManager_Supervise() {
	ctx := context.Background()
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	m, err := ownership.New(ctx, ownership.Config{JetStream: js, Service: "pop3fetcher"})
	if err != nil {
		log.Fatal(err)
	}
	var store mailbusv1.AccountServiceClient // the store's gRPC client
	limiter := hostlimit.New(hostlimit.Config{Rate: 10, Burst: 5, MaxConns: 50})
	sup := m.Supervise(accountrun.Config{
		Accounts: accountrun.FromClient(store),
		Protocol: mailbusv1.Protocol_PROTOCOL_POP3,
		// ctx ends when the lease is lost (before another replica can take
		// the account), when the account moves to another replica, or on
		// shutdown.
		Work: func(ctx context.Context, a *mailbusv1.Account) {
			release, err := limiter.Acquire(ctx, a.GetHost())
			if err != nil {
				return
			}
			defer release()
			token := ownership.FromContext(ctx).Token() // sent with every write to the store
			_ = token
			// ... connect and poll until ctx ends ...
		},
	})
	go m.Run(ctx)
	sup.Run(ctx)
}
