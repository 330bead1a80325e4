package mailbus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	"github.com/mailbus/mailbus/pkg/natsperm"
)

// embeddedNATS is the embedded NATS server with the users of
// pkg/natsperm: one per service, with a password made at each start, and
// the consumer users of the users file, which it follows while it runs
// (decision 29): the logins are checked by natsLogins, and each consumer
// user's NATS account is added to the running server with its imports.
type embeddedNATS struct {
	ns        *server.Server
	base      server.Options
	passwords map[string]string // role -> password
	dataDir   string
	log       *slog.Logger
	admin     *nats.Conn // as the store: creates and deletes the consumers
	// stream is the events stream as the store creates it, for a user
	// granted before the store's relay made it.
	stream  jetstream.StreamConfig
	logins  *natsLogins
	service *server.Account // natsperm.ServiceAccount in the server
	// granted are the consumer users the server has, by name; accounts
	// counts the consumer accounts made, for fresh names.
	granted  map[string]grantedUser
	accounts int

	stopWatch func()
	watchDone chan struct{}
}

// grantedUser is a consumer user as applied, and its NATS account.
type grantedUser struct {
	consumer natsperm.Consumer
	account  *server.Account
}

// options returns the server options: the service account from
// natsperm's configuration, and the logins of natsLogins instead of
// configured users.
func (e *embeddedNATS) options() (*server.Options, error) {
	spec := natsperm.Spec{}
	for _, role := range natsperm.Roles {
		spec.Services = append(spec.Services, natsperm.ServiceUser{Role: role, User: role, Password: e.passwords[role]})
	}
	conf, err := natsperm.Config(spec)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{}
	if err := opts.ProcessConfigString(conf); err != nil {
		return nil, fmt.Errorf("mailbus: embedded NATS users: %w", err)
	}
	base := e.base
	base.Accounts = opts.Accounts
	base.CustomClientAuthentication = e.logins
	return &base, nil
}

// addServiceLogins lets the services in: each role's user in the service
// account with natsperm's permissions.
func (e *embeddedNATS) addServiceLogins() error {
	acc, err := e.ns.LookupAccount(natsperm.ServiceAccount)
	if err != nil {
		return fmt.Errorf("mailbus: embedded NATS: %w", err)
	}
	e.service = acc
	for _, role := range natsperm.Roles {
		p, err := natsperm.Service(role, "")
		if err != nil {
			return err
		}
		e.logins.set(role, natsLogin{password: e.passwords[role], user: &server.User{
			Username: role, Account: acc, Permissions: serverPermissions(p),
		}})
	}
	return nil
}

// credentials are the connection options of a service role.
func (e *embeddedNATS) credentials(role string) nats.Option {
	return nats.UserInfo(role, e.passwords[role])
}

// apply makes the server's consumer users those of users: it revokes
// the users no longer listed (or whose scope changed), grants the new
// ones, and changes passwords. It goes on past a failing user and
// returns every error.
func (e *embeddedNATS) apply(ctx context.Context, users []natsperm.Consumer) error {
	want := map[string]natsperm.Consumer{}
	for _, u := range users {
		want[u.User] = u
	}
	var errs []error
	for _, name := range sortedKeys(e.granted) {
		g := e.granted[name]
		u, listed := want[name]
		switch {
		case listed && u == g.consumer:
		case listed && u.Subjects() == g.consumer.Subjects():
			// A new password: connections made with the old one end.
			e.setLogin(u, g.account)
			e.disconnect(g.account)
			e.granted[name] = grantedUser{consumer: u, account: g.account}
			e.log.Info("NATS user's password changed", "user", name)
		default:
			if err := e.revoke(ctx, name, g); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, name := range sortedKeys(want) {
		if _, ok := e.granted[name]; ok {
			continue
		}
		if err := e.grant(ctx, want[name]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// grant creates the user's durable consumer, adds a NATS account of its
// own that imports from the service account what natsperm grants, and
// then lets the user log in.
func (e *embeddedNATS) grant(ctx context.Context, u natsperm.Consumer) error {
	js, err := jetstream.New(e.admin)
	if err != nil {
		return err
	}
	if _, err := events.EnsureStream(ctx, js, e.stream); err != nil {
		return fmt.Errorf("mailbus: embedded NATS: %w", err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, u.JetStreamConsumer()); err != nil {
		return fmt.Errorf("mailbus: embedded NATS: consumer of user %s: %w", u.User, err)
	}
	acc, err := e.newConsumerAccount(u)
	if err != nil {
		return fmt.Errorf("mailbus: embedded NATS: user %s: %w", u.User, err)
	}
	e.setLogin(u, acc)
	e.granted[u.User] = grantedUser{consumer: u, account: acc}
	e.log.Info("NATS user added", "user", u.User, "reads", u.Scope())
	return nil
}

// newConsumerAccount registers the user's NATS account with its imports,
// each exported by the service account to it alone. An account is never
// reused: a user removed and made again (perhaps for another mailbus
// account) gets a new one, CONSUMER_<user>#<n>, because nats-server can
// add imports to a running account but not remove them.
func (e *embeddedNATS) newConsumerAccount(u natsperm.Consumer) (*server.Account, error) {
	name := natsperm.ConsumerAccount(u.User)
	if _, err := e.ns.LookupAccount(name); err == nil {
		e.accounts++
		name = fmt.Sprintf("%s#%d", name, e.accounts)
	}
	acc, err := e.ns.RegisterAccount(name)
	if err != nil {
		return nil, err
	}
	services, live := u.Imports(events.StreamName)
	for _, s := range services {
		resp := server.Singleton
		if s.Streamed {
			resp = server.Streamed
		}
		if err := e.service.AddServiceExportWithResponse(s.Subject, resp, []*server.Account{acc}); err != nil {
			return nil, fmt.Errorf("export %s: %w", s.Subject, err)
		}
		if err := acc.AddServiceImport(e.service, s.Local, s.Subject); err != nil {
			return nil, fmt.Errorf("import %s: %w", s.Subject, err)
		}
	}
	if err := e.service.AddStreamExport(live, []*server.Account{acc}); err != nil {
		return nil, fmt.Errorf("export %s: %w", live, err)
	}
	if err := acc.AddStreamImport(e.service, live, ""); err != nil {
		return nil, fmt.Errorf("import %s: %w", live, err)
	}
	return acc, nil
}

func (e *embeddedNATS) setLogin(u natsperm.Consumer, acc *server.Account) {
	e.logins.set(u.User, natsLogin{password: u.Password, user: &server.User{
		Username: u.User, Account: acc, Permissions: serverPermissions(u.Permissions(events.StreamName)),
	}})
}

// revoke refuses the user's logins from now on, closes its connections
// and deletes its durable consumer.
func (e *embeddedNATS) revoke(ctx context.Context, name string, g grantedUser) error {
	e.logins.remove(name)
	e.disconnect(g.account)
	delete(e.granted, name)
	e.log.Info("NATS user removed", "user", name)
	js, err := jetstream.New(e.admin)
	if err != nil {
		return err
	}
	if err := js.DeleteConsumer(ctx, events.StreamName, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("mailbus: embedded NATS: deleting the consumer of user %s: %w", name, err)
	}
	return nil
}

// disconnect closes every client connection of a consumer account.
func (e *embeddedNATS) disconnect(acc *server.Account) {
	cz, err := e.ns.Connz(&server.ConnzOptions{Username: true, Account: acc.Name, Limit: math.MaxInt32})
	if err != nil {
		e.log.Error("listing a NATS user's connections", "account", acc.Name, "err", err)
		return
	}
	for _, c := range cz.Conns {
		_ = e.ns.DisconnectClientByID(c.Cid)
	}
}

// watchUsers applies the users file whenever its content changes, every
// poll, until stopped; applied is the content applied at start.
func (e *embeddedNATS) watchUsers(poll time.Duration, applied []byte) {
	ctx, cancel := context.WithCancel(context.Background())
	e.stopWatch, e.watchDone = cancel, make(chan struct{})
	go func() {
		defer close(e.watchDone)
		tick := time.NewTicker(poll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				applied = e.applyFileIfChanged(ctx, applied)
			}
		}
	}()
}

// applyFileIfChanged applies the users file if its content differs from
// last, and returns the content it read. A file that does not parse is
// logged once and the users stay as they were.
func (e *embeddedNATS) applyFileIfChanged(ctx context.Context, last []byte) []byte {
	data, users, err := e.readUsers()
	switch {
	case data == nil:
		e.log.Error("reading the NATS users", "err", err)
		return last
	case bytes.Equal(data, last):
		return last
	case err != nil:
		e.log.Error("the NATS users file does not parse; the users stay as they were", "err", err)
		return data
	}
	actx, cancel := context.WithTimeout(ctx, natsReadyTimeout)
	defer cancel()
	if err := e.apply(actx, users); err != nil {
		e.log.Error("applying the NATS users", "err", err)
	}
	e.noteApplied(data)
	return data
}

// noteApplied tells nats-user that data is applied; a failure only
// leaves nats-user saying that it is not (yet).
func (e *embeddedNATS) noteApplied(data []byte) {
	if err := noteNATSUsersApplied(e.dataDir, data); err != nil {
		e.log.Warn("noting the applied NATS users", "err", err)
	}
}

// readUsers reads and parses the users file: its content ("[]" when it
// does not exist; nil when it cannot be read) and its users.
func (e *embeddedNATS) readUsers() ([]byte, []natsperm.Consumer, error) {
	data, err := os.ReadFile(filepath.Join(e.dataDir, NATSUsersFileName))
	if errors.Is(err, os.ErrNotExist) {
		data, err = []byte("[]"), nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("mailbus: NATS users: %w", err)
	}
	users, err := parseNATSUsers(data)
	return data, users, err
}

func (e *embeddedNATS) shutdown() {
	if e.stopWatch != nil {
		e.stopWatch()
		<-e.watchDone
	}
	if e.admin != nil {
		e.admin.Close()
	}
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
