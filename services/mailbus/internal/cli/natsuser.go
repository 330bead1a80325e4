package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

func (a *app) natsUserCommand() *cobra.Command {
	return group("nats-user", "NATS users: read-only events consumers (one account or all), and the services' users",
		`  mailbus nats-user create --account work
  mailbus nats-user create --all-accounts --user crm
  mailbus nats-user remove crm
  mailbus nats-user create --service store`,
		a.natsUserCreateCommand(), a.natsUserRemoveCommand(), a.natsUserListCommand())
}

func (a *app) natsUserCreateCommand() *cobra.Command {
	var account, user, data, role string
	var all bool
	c := &cobra.Command{
		Use:   "create (--account N | --all-accounts | --service ROLE)",
		Short: "Create a NATS user that reads one account's events or every account's, or print a service's user",
		Long: `With --account: create a NATS user that can read only that account's
events (mailbus.events.<account>.>) through JetStream, from the durable pull
consumer named like the user on MAILBUS_EVENTS, and nothing else. It lives in
a NATS account of its own, CONSUMER_<user>, that imports the consumer's
CONSUMER.INFO and CONSUMER.MSG.NEXT under the API prefix MAILBUS.JS.API, its
acknowledgements, and the account's live subjects.

With --all-accounts: the same, for the events of every account, present and
future (mailbus.events.>): one user for a backend that serves them all.

The user is added to --data/nats-users.json (the password only as a bcrypt
hash); a running mailbus serve applies it within a second, without a restart,
and creates the consumer. The password is printed once. For an external NATS
server, the configuration to add and the consumer to create are printed too.

With --service (store, imapsync, pop3fetcher or webhooks): print a new
password and the configuration of that service's user for an external NATS
server.`,
		Example: `  mailbus nats-user create --account work
  mailbus nats-user create --all-accounts --user crm
  mailbus nats-user create --account 7 --user crm --data /var/lib/mailbus
  mailbus nats-user create --service imapsync`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			given := 0
			for _, set := range []bool{account != "", all, role != ""} {
				if set {
					given++
				}
			}
			switch {
			case given > 1:
				return usagef("give one of --account, --all-accounts and --service")
			case role != "":
				return a.printServiceUser(role, user)
			case given == 0:
				return usagef("give --account (a consumer of that account's events), --all-accounts or --service")
			}
			if err := natsUsersDataDir(data); err != nil {
				return err
			}
			if all {
				consumer, password, err := mailbus.AddNATSUser(data, natsperm.Consumer{User: user, AllAccounts: true})
				if err != nil {
					return err
				}
				return a.printConsumerUser(nil, consumer, password, data, waitApplied(ctx, data))
			}
			return a.withAccount(ctx, cmd, account, func(_ *client, acct *mailbusv1.Account) error {
				consumer, password, err := mailbus.AddNATSUser(data, natsperm.Consumer{User: user, AccountID: acct.Id})
				if err != nil {
					return err
				}
				return a.printConsumerUser(acct, consumer, password, data, waitApplied(ctx, data))
			})
		}),
	}
	fl := c.Flags()
	fl.StringVar(&account, "account", "", "the account (name or id) whose events the user reads")
	fl.BoolVar(&all, "all-accounts", false, "the user reads the events of every account")
	fl.StringVar(&role, "service", "", "print the user of a service: store, imapsync, pop3fetcher or webhooks")
	fl.StringVar(&user, "user", "", "the user name (default events-<account>-<random> or events-all-<random>, or the service's name)")
	a.stringVar(fl, &data, "data", "MAILBUS_DATA", mailbus.DefaultDataDir, "data directory of mailbus serve, whose embedded NATS server gets the user")
	return c
}

func (a *app) natsUserRemoveCommand() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:   "remove USER",
		Short: "Remove an events consumer user: refused from then on, its connections closed, its consumer deleted",
		Long: `Remove the user from --data/nats-users.json. A running mailbus serve applies it
within a second, without a restart: the user's connections are closed, a new
login is refused, and its durable consumer is deleted.`,
		Example: "  mailbus nats-user remove crm\n  mailbus nats-user remove crm --data /var/lib/mailbus",
		Args:    exactArgs(1, "user name"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if err := natsUsersDataDir(data); err != nil {
				return err
			}
			removed, err := mailbus.RemoveNATSUser(data, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.io.Out, "Removed NATS user %s (it read the events of %s) from %s.\n%s\n",
				removed.User, removed.Scope(), filepath.Join(data, mailbus.NATSUsersFileName), appliedNote(waitApplied(ctx, data)))
			return nil
		}),
	}
	a.stringVar(c.Flags(), &data, "data", "MAILBUS_DATA", mailbus.DefaultDataDir, "data directory of mailbus serve")
	return c
}

func (a *app) natsUserListCommand() *cobra.Command {
	var data string
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the events consumer users of mailbus serve",
		Example: "  mailbus nats-user list\n  mailbus nats-user list --data /var/lib/mailbus",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if err := natsUsersDataDir(data); err != nil {
				return err
			}
			users, err := mailbus.LoadNATSUsers(data)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(a.io.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "USER\tREADS\tSUBJECTS")
			for _, u := range users {
				fmt.Fprintf(w, "%s\t%s\t%s\n", u.User, u.Scope(), u.Subjects())
			}
			return w.Flush()
		}),
	}
	a.stringVar(c.Flags(), &data, "data", "MAILBUS_DATA", mailbus.DefaultDataDir, "data directory of mailbus serve")
	return c
}

// natsUsersDataDir refuses a --data that is not the data directory of a
// mailbus serve with its embedded NATS server (which has made nats/ in
// it): the users file elsewhere would be read by nobody.
func natsUsersDataDir(data string) error {
	if err := existingDataDir(data, mailbus.NATSUsersFileName); err != nil {
		return err
	}
	if fi, err := os.Stat(filepath.Join(data, "nats")); err != nil || !fi.IsDir() {
		return usagef("%s is not the data directory of a mailbus serve with its embedded NATS server (it has no nats/): give --data (or MAILBUS_DATA); with an external NATS server (serve --nats), add users to its configuration (nats-user create prints it)", data)
	}
	return nil
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

// appliedWait is how long nats-user waits for a running mailbus serve to
// apply a change of the users file: several of its polls.
const appliedWait = 5 * time.Second

// waitApplied waits until mailbus serve has applied the users file as it
// is now (it notes that in the data directory), at most appliedWait;
// false when it has not, as when no serve runs.
func waitApplied(ctx context.Context, data string) bool {
	ctx, cancel := context.WithTimeout(ctx, appliedWait)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if ok, err := mailbus.NATSUsersApplied(data); ok || err != nil {
			return ok
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

func appliedNote(applied bool) string {
	if applied {
		return "The running mailbus serve has applied it (no restart)."
	}
	return "No running mailbus serve has applied it yet (is it running on this --data?); serve applies it as soon as it runs, without a restart."
}

func (a *app) printConsumerUser(acct *mailbusv1.Account, c natsperm.Consumer, password, data string, applied bool) error {
	conf, err := natsperm.Config(natsperm.Spec{Consumers: []natsperm.Consumer{c}})
	if err != nil {
		return err
	}
	w := a.io.Out
	if acct != nil {
		fmt.Fprintf(w, "NATS user for the events of account %s (id %s):\n", acct.Name, acct.Id)
	} else {
		fmt.Fprintf(w, "NATS user for the events of all accounts:\n")
	}
	fmt.Fprintf(w, "  user:        %s\n", c.User)
	fmt.Fprintf(w, "  password:    %s   (shown only now; stored as a bcrypt hash)\n", password)
	fmt.Fprintf(w, "  consumer:    %s on stream %s (durable, pull, filter %s)\n", c.User, events.StreamName, c.Subjects())
	fmt.Fprintf(w, "  API prefix:  %s   (Go: jetstream.NewWithAPIPrefix(nc, %q))\n", natsperm.ConsumerAPIPrefix, natsperm.ConsumerAPIPrefix)
	fmt.Fprintf(w, "  live, JSON:  nats sub --user %s --password '...' --raw --translate '%s events decode' '%s'\n", c.User, a.io.Program, c.Subjects())
	fmt.Fprintf(w, "\nAdded to %s. %s\n", filepath.Join(data, mailbus.NATSUsersFileName), appliedNote(applied))
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
		return usagef("--service %q: want store, imapsync, pop3fetcher or webhooks", role)
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
