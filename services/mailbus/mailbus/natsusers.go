package mailbus

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailbus/mailbus/pkg/events"
	"github.com/mailbus/mailbus/pkg/natsperm"
)

// NATSUsersFileName is the file in the data directory that lists the
// events consumer users of the embedded NATS server (mode 0600; passwords
// as bcrypt hashes). `mailbus nats-user create` adds to it; the server
// reads it at start (nats-server does not wire the imports of an account
// added by a configuration reload, so a restart applies a new user).
const NATSUsersFileName = "nats-users.json"

// LoadNATSUsers reads the consumer users of the data directory; none when
// the file does not exist.
func LoadNATSUsers(dataDir string) ([]natsperm.Consumer, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, NATSUsersFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mailbus: NATS users: %w", err)
	}
	var users []natsperm.Consumer
	if err := json.Unmarshal(data, &users); err != nil {
		return nil, fmt.Errorf("mailbus: NATS users: %s: %w", NATSUsersFileName, err)
	}
	for _, u := range users {
		if err := u.Validate(); err != nil {
			return nil, fmt.Errorf("mailbus: NATS users: %w", err)
		}
	}
	return users, nil
}

// AddNATSUser adds an events consumer user for the mailbus account
// accountID to the data directory's users file and returns it with its
// password, which the file keeps only as a bcrypt hash. An empty user
// name means events-<account>-<random>.
func AddNATSUser(dataDir, accountID, user string) (natsperm.Consumer, string, error) {
	if user == "" {
		suffix := make([]byte, 3)
		if _, err := rand.Read(suffix); err != nil {
			return natsperm.Consumer{}, "", err
		}
		user = "events-" + accountID + "-" + hex.EncodeToString(suffix)
	}
	password, err := NewNATSPassword()
	if err != nil {
		return natsperm.Consumer{}, "", err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.DefaultCost)
	if err != nil {
		return natsperm.Consumer{}, "", fmt.Errorf("mailbus: NATS user: %w", err)
	}
	c := natsperm.Consumer{User: user, Password: string(hash), AccountID: accountID}
	if err := c.Validate(); err != nil {
		return natsperm.Consumer{}, "", err
	}
	// The data directory of mailbus serve exists: a missing one is a
	// wrong --data, not one to create.
	if fi, err := os.Stat(dataDir); err != nil {
		return natsperm.Consumer{}, "", fmt.Errorf("mailbus: data directory: %w", err)
	} else if !fi.IsDir() {
		return natsperm.Consumer{}, "", fmt.Errorf("mailbus: data directory %s: not a directory", dataDir)
	}
	users, err := LoadNATSUsers(dataDir)
	if err != nil {
		return natsperm.Consumer{}, "", err
	}
	for _, u := range users {
		if u.User == user {
			return natsperm.Consumer{}, "", fmt.Errorf("mailbus: NATS user %q exists", user)
		}
	}
	users = append(users, c)
	data, err := json.MarshalIndent(users, "", "  ")
	if err != nil {
		return natsperm.Consumer{}, "", err
	}
	path := filepath.Join(dataDir, NATSUsersFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return natsperm.Consumer{}, "", fmt.Errorf("mailbus: NATS users: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return natsperm.Consumer{}, "", fmt.Errorf("mailbus: NATS users: %w", err)
	}
	return c, password, nil
}

// NewNATSPassword returns a new random password for a NATS user.
func NewNATSPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("mailbus: password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// embeddedNATS is the embedded NATS server with the users of
// pkg/natsperm: one per service, with a password made at each start, and
// the consumer users of the users file.
type embeddedNATS struct {
	ns        *server.Server
	base      server.Options
	passwords map[string]string // role -> password
	dataDir   string
	log       *slog.Logger
	admin     *nats.Conn // as the store: creates the consumers
}

// options returns the server options with the users of consumers.
func (e *embeddedNATS) options(consumers []natsperm.Consumer) (*server.Options, error) {
	spec := natsperm.Spec{Consumers: consumers}
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
	base.Accounts, base.Users, base.Nkeys = opts.Accounts, opts.Users, opts.Nkeys
	return &base, nil
}

// credentials are the connection options of a service role.
func (e *embeddedNATS) credentials(role string) nats.Option {
	return nats.UserInfo(role, e.passwords[role])
}

// ensureConsumers creates the durable consumer of every consumer user.
func (e *embeddedNATS) ensureConsumers(ctx context.Context, consumers []natsperm.Consumer) error {
	if len(consumers) == 0 {
		return nil
	}
	js, err := jetstream.New(e.admin)
	if err != nil {
		return err
	}
	if _, err := events.EnsureStream(ctx, js, events.StreamConfig(1, 0, 0)); err != nil {
		return fmt.Errorf("mailbus: embedded NATS: %w", err)
	}
	for _, c := range consumers {
		if _, err := js.CreateOrUpdateConsumer(ctx, events.StreamName, c.JetStreamConsumer()); err != nil {
			return fmt.Errorf("mailbus: embedded NATS: consumer of user %s: %w", c.User, err)
		}
	}
	return nil
}

func (e *embeddedNATS) shutdown() {
	if e.admin != nil {
		e.admin.Close()
	}
	e.ns.Shutdown()
	e.ns.WaitForShutdown()
}
