package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

func (a *app) natsUserCommand() *cobra.Command {
	return group("nats-user", "NATS users: read-only events consumers per account, and the services' users",
		`  mailbus nats-user create --account work
  mailbus nats-user create --service store`,
		a.natsUserCreateCommand())
}

func (a *app) natsUserCreateCommand() *cobra.Command {
	var account, user, data, role string
	c := &cobra.Command{
		Use:   "create (--account N | --service ROLE)",
		Short: "Create a NATS user that reads one account's events, or print a service's user",
		Long: `With --account: create a NATS user that can read only that account's
events (mailbus.events.<account>.>) through JetStream, from the durable pull
consumer named like the user on MAILBUS_EVENTS, and nothing else. It lives in
a NATS account of its own, CONSUMER_<user>, that imports the consumer's
CONSUMER.INFO and CONSUMER.MSG.NEXT under the API prefix MAILBUS.JS.API, its
acknowledgements, and the account's live subjects.

The user is added to --data/nats-users.json (the password only as a bcrypt
hash) for the embedded NATS server of mailbus serve, which applies it at its
next start and creates the consumer; the password is printed once. For an
external NATS server, the configuration to add and the consumer to create are
printed too.

With --service (store, imapsync or pop3fetcher): print a new password and the
configuration of that service's user for an external NATS server.`,
		Example: `  mailbus nats-user create --account work
  mailbus nats-user create --account 7 --user crm --data /var/lib/mailbus
  mailbus nats-user create --service imapsync`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			switch {
			case account != "" && role != "":
				return usagef("give --account or --service, not both")
			case role != "":
				return a.printServiceUser(role, user)
			case account == "":
				return usagef("give --account (a consumer of that account's events) or --service")
			}
			if err := existingDataDir(data, mailbus.NATSUsersFileName); err != nil {
				return err
			}
			return a.withAccount(ctx, cmd, account, func(_ *client, acct *mailbusv1.Account) error {
				consumer, password, err := mailbus.AddNATSUser(data, acct.Id, user)
				if err != nil {
					return err
				}
				return a.printConsumerUser(acct, consumer, password, data)
			})
		}),
	}
	fl := c.Flags()
	fl.StringVar(&account, "account", "", "the account (name or id) whose events the user reads")
	fl.StringVar(&role, "service", "", "print the user of a service: store, imapsync or pop3fetcher")
	fl.StringVar(&user, "user", "", "the user name (default events-<account>-<random>, or the service's name)")
	a.stringVar(fl, &data, "data", "MAILBUS_DATA", mailbus.DefaultDataDir, "data directory of mailbus serve, whose embedded NATS server gets the user")
	return c
}

// existingDataDir refuses a data directory that does not exist, so that a
// command run from another directory, or without --data, fails instead
// of writing into a new, empty ./mailbus-data beside the real one (issue
// 16). what names the file the command works on there, for the message.
func existingDataDir(dir, what string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usagef("no data directory %s (for %s): give --data (or MAILBUS_DATA), the data directory of mailbus serve", dir, what)
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !fi.IsDir():
		return usagef("--data %s is not a directory", dir)
	}
	return nil
}

func (a *app) printConsumerUser(acct *mailbusv1.Account, c natsperm.Consumer, password, data string) error {
	conf, err := natsperm.Config(natsperm.Spec{Consumers: []natsperm.Consumer{c}})
	if err != nil {
		return err
	}
	w := a.io.Out
	fmt.Fprintf(w, "NATS user for the events of account %s (id %s):\n", acct.Name, acct.Id)
	fmt.Fprintf(w, "  user:        %s\n", c.User)
	fmt.Fprintf(w, "  password:    %s   (shown only now; stored as a bcrypt hash)\n", password)
	fmt.Fprintf(w, "  consumer:    %s on stream %s (durable, pull, filter %s)\n", c.User, events.StreamName, c.Subjects())
	fmt.Fprintf(w, "  API prefix:  %s   (Go: jetstream.NewWithAPIPrefix(nc, %q))\n", natsperm.ConsumerAPIPrefix, natsperm.ConsumerAPIPrefix)
	fmt.Fprintf(w, "  live:        nats sub --user %s --password '...' '%s'\n", c.User, c.Subjects())
	fmt.Fprintf(w, "\nmailbus serve: added to %s; restart mailbus serve to apply it.\n", filepath.Join(data, mailbus.NATSUsersFileName))
	fmt.Fprintf(w, "\nAn external NATS server: merge these accounts into its configuration (the\n"+
		"exports into the MAILBUS account of the services), reload it, and create the\n"+
		"consumer as the store's user:\n"+
		"  nats consumer add %s %s --pull --filter '%s' --ack explicit --deliver all --defaults\n\n%s",
		events.StreamName, c.User, c.Subjects(), conf)
	return nil
}

func (a *app) printServiceUser(role, user string) error {
	if user == "" {
		user = role
	}
	if _, err := natsperm.Service(role, ""); err != nil {
		return usagef("--service %q: want store, imapsync or pop3fetcher", role)
	}
	password, err := mailbus.NewNATSPassword()
	if err != nil {
		return err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return err
	}
	conf, err := natsperm.Config(natsperm.Spec{Services: []natsperm.ServiceUser{{Role: role, User: user, Password: string(hash)}}})
	if err != nil {
		return err
	}
	w := a.io.Out
	fmt.Fprintf(w, "NATS user of the %s service:\n  user:      %s\n  password:  %s   (shown only now)\n", role, user, password)
	fmt.Fprintf(w, "  the service: --nats nats://%s:<password>@<host>:4222 (MAILBUS_NATS)\n\n", user)
	fmt.Fprintf(w, "Its entry in the MAILBUS account of the NATS server configuration:\n\n%s", conf)
	return nil
}
