package mailbus

import (
	"crypto/subtle"
	"strings"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
	"golang.org/x/crypto/bcrypt"

	"github.com/mailbus/mailbus/pkg/natsperm"
)

// natsLogins authenticates the clients of the embedded NATS server
// (server.Options.CustomClientAuthentication, decision 29): each login is
// a user name, a password (or its bcrypt hash) and the user the server
// registers the connection as, with its NATS account and permissions.
// Logins change while the server runs: a new consumer user can log in at
// once, a removed one no longer can, and no configuration reload touches
// the connections of the services.
type natsLogins struct {
	mu     sync.RWMutex
	logins map[string]natsLogin
}

// natsLogin is one user's password (plain or bcrypt) and what it is
// granted.
type natsLogin struct {
	password string
	user     *server.User
}

func newNATSLogins() *natsLogins { return &natsLogins{logins: map[string]natsLogin{}} }

// Check implements server.Authentication.
func (l *natsLogins) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	o := c.GetOpts()
	if o == nil {
		return false
	}
	l.mu.RLock()
	login, ok := l.logins[o.Username]
	l.mu.RUnlock()
	if !ok || !passwordMatches(login.password, o.Password) {
		return false
	}
	c.RegisterUser(login.user)
	return true
}

func (l *natsLogins) set(name string, login natsLogin) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.logins[name] = login
}

func (l *natsLogins) remove(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.logins, name)
}

// passwordMatches compares as nats-server does: a stored password that
// is a bcrypt hash is checked as one, any other in constant time.
func passwordMatches(stored, given string) bool {
	if strings.HasPrefix(stored, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(stored), []byte(given)) == nil
	}
	return subtle.ConstantTimeCompare([]byte(stored), []byte(given)) == 1
}

// serverPermissions converts natsperm's permissions to nats-server's.
func serverPermissions(p natsperm.Permissions) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: p.Publish},
		Subscribe: &server.SubjectPermission{Allow: p.Subscribe},
	}
}
