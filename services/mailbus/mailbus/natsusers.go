package mailbus

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/mailbus/mailbus/pkg/natsperm"
)

// NATSUsersFileName is the file in the data directory that lists the
// events consumer users of the embedded NATS server (mode 0600; passwords
// as bcrypt hashes). `mailbus nats-user create` and `remove` change it; a
// running mailbus serve reads it again within NATSUsersPoll and applies
// the change without a restart (decision 29).
const NATSUsersFileName = "nats-users.json"

// NATSUsersAppliedFileName is the file in which mailbus serve notes
// which content of the users file its embedded NATS server applies (the
// SHA-256 of it, in hex), so that nats-user can tell when a change took
// effect (NATSUsersApplied).
const NATSUsersAppliedFileName = "nats-users.applied"

// DefaultNATSUsersPoll is how often mailbus serve reads the users file
// for a change: a second, so that a user made with nats-user create works
// by the time its owner has copied the password.
const DefaultNATSUsersPoll = time.Second

// natsPasswordCost is the bcrypt cost of the consumer users' password
// hashes: the lowest. A cost slows down guessing a weak password from its
// hash; these passwords are 24 random bytes (NewNATSPassword), beyond any
// guessing at whatever cost, while every login pays the cost again (at
// the default cost 10, about 60 ms, and seconds under the race detector,
// longer than a NATS client waits for its connection).
const natsPasswordCost = bcrypt.MinCost

// ErrNoNATSUser is returned for a consumer user that the users file does
// not hold.
var ErrNoNATSUser = errors.New("no such NATS user")

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
	return parseNATSUsers(data)
}

func parseNATSUsers(data []byte) ([]natsperm.Consumer, error) {
	var users []natsperm.Consumer
	if err := json.Unmarshal(data, &users); err != nil {
		return nil, fmt.Errorf("mailbus: NATS users: %s: %w", NATSUsersFileName, err)
	}
	seen := map[string]bool{}
	for _, u := range users {
		if err := u.Validate(); err != nil {
			return nil, fmt.Errorf("mailbus: NATS users: %w", err)
		}
		if seen[u.User] {
			return nil, fmt.Errorf("mailbus: NATS users: user %q twice", u.User)
		}
		seen[u.User] = true
	}
	return users, nil
}

// AddNATSUser adds an events consumer user to the data directory's users
// file and returns it with its password, which the file keeps only as a
// bcrypt hash. scope says what the user reads (AccountID, or AllAccounts)
// and may name it (User); an empty name means events-<account>-<random>,
// or events-all-<random>. The data directory must exist: a missing one is
// a wrong --data, not one to create.
func AddNATSUser(dataDir string, scope natsperm.Consumer) (natsperm.Consumer, string, error) {
	user := scope.User
	if user == "" {
		suffix := make([]byte, 3)
		if _, err := rand.Read(suffix); err != nil {
			return natsperm.Consumer{}, "", err
		}
		of := scope.AccountID
		if scope.AllAccounts {
			of = "all"
		}
		user = "events-" + of + "-" + hex.EncodeToString(suffix)
	}
	password, err := NewNATSPassword()
	if err != nil {
		return natsperm.Consumer{}, "", err
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), natsPasswordCost)
	if err != nil {
		return natsperm.Consumer{}, "", fmt.Errorf("mailbus: NATS user: %w", err)
	}
	c := natsperm.Consumer{User: user, Password: string(hash), AccountID: scope.AccountID, AllAccounts: scope.AllAccounts}
	if err := c.Validate(); err != nil {
		return natsperm.Consumer{}, "", err
	}
	if err := checkDataDir(dataDir); err != nil {
		return natsperm.Consumer{}, "", err
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
	if err := writeNATSUsers(dataDir, append(users, c)); err != nil {
		return natsperm.Consumer{}, "", err
	}
	return c, password, nil
}

// RemoveNATSUser removes a consumer user from the data directory's users
// file and returns it; ErrNoNATSUser when the file does not hold it.
func RemoveNATSUser(dataDir, user string) (natsperm.Consumer, error) {
	if err := checkDataDir(dataDir); err != nil {
		return natsperm.Consumer{}, err
	}
	users, err := LoadNATSUsers(dataDir)
	if err != nil {
		return natsperm.Consumer{}, err
	}
	for i, u := range users {
		if u.User == user {
			return u, writeNATSUsers(dataDir, slices.Delete(users, i, i+1))
		}
	}
	return natsperm.Consumer{}, fmt.Errorf("mailbus: %w %q in %s", ErrNoNATSUser, user, filepath.Join(dataDir, NATSUsersFileName))
}

func checkDataDir(dataDir string) error {
	if fi, err := os.Stat(dataDir); err != nil {
		return fmt.Errorf("mailbus: data directory: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("mailbus: data directory %s: not a directory", dataDir)
	}
	return nil
}

// writeNATSUsers replaces the users file at once (a rename), so that
// mailbus serve never reads half of it.
func writeNATSUsers(dataDir string, users []natsperm.Consumer) error {
	if users == nil {
		users = []natsperm.Consumer{}
	}
	data, err := json.MarshalIndent(users, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dataDir, NATSUsersFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("mailbus: NATS users: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mailbus: NATS users: %w", err)
	}
	return nil
}

// noteNATSUsersApplied records that the users file's content data is
// applied (NATSUsersApplied).
func noteNATSUsersApplied(dataDir string, data []byte) error {
	path := filepath.Join(dataDir, NATSUsersAppliedFileName)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(usersDigest(data)+"\n"), 0o600); err != nil {
		return fmt.Errorf("mailbus: NATS users: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("mailbus: NATS users: %w", err)
	}
	return nil
}

// NATSUsersApplied reports whether the running mailbus serve of the data
// directory has applied the users file as it is now.
func NATSUsersApplied(dataDir string) (bool, error) {
	data, err := os.ReadFile(filepath.Join(dataDir, NATSUsersFileName))
	if errors.Is(err, os.ErrNotExist) {
		data, err = []byte("[]"), nil
	}
	if err != nil {
		return false, fmt.Errorf("mailbus: NATS users: %w", err)
	}
	applied, err := os.ReadFile(filepath.Join(dataDir, NATSUsersAppliedFileName))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mailbus: NATS users: %w", err)
	}
	return strings.TrimSpace(string(applied)) == usersDigest(data), nil
}

func usersDigest(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// NewNATSPassword returns a new random password for a NATS user.
func NewNATSPassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("mailbus: password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
