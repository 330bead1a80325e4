package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// Defaults of Config.
const (
	DefaultCacheTTL        = 2 * time.Second
	DefaultRecheckInterval = time.Second
	// maxCached bounds the lookup cache; it is emptied when full.
	maxCached = 10000
)

// Directory is what the authenticator reads: tokens, and which account a
// mailbox, message or account name belongs to. *db.DB is one.
type Directory interface {
	TokenByID(ctx context.Context, id string) (*db.StoredToken, error)
	MailboxAccount(ctx context.Context, mailboxID string) (string, error)
	MessageAccount(ctx context.Context, messageID string) (string, error)
	AccountIDByName(ctx context.Context, name string) (string, error)
}

// Config configures an Authenticator.
type Config struct {
	// Directory finds tokens and the accounts of objects.
	Directory Directory
	// ServiceToken, when set, is a service token accepted without being
	// stored: the credential of the fetchers in the same process.
	ServiceToken string
	// CacheTTL is how long a token lookup is reused; default 2s.
	CacheTTL time.Duration
	// RecheckInterval is how often open streams re-check their token;
	// default 1s.
	RecheckInterval time.Duration
	// Logger receives refusals at debug level; nil discards them.
	Logger *slog.Logger
}

// Principal is who called: the token's role and scope.
type Principal struct {
	// TokenID is the token's public id ("internal" for Config.ServiceToken).
	TokenID string
	// Name is the token's label.
	Name string
	// Role is what the token may do.
	Role mailbusv1.TokenRole
	// ReadOnly forbids changes (device tokens).
	ReadOnly bool
	// accounts is a device token's scope.
	accounts []string
}

// AllAccounts reports whether the principal reaches every account.
func (p *Principal) AllAccounts() bool { return p.Role != mailbusv1.TokenRole_TOKEN_ROLE_DEVICE }

// CanSee reports whether the principal may see an account.
func (p *Principal) CanSee(accountID string) bool {
	return p.AllAccounts() || slices.Contains(p.accounts, accountID)
}

// AccountIDs returns a device token's accounts.
func (p *Principal) AccountIDs() []string { return slices.Clone(p.accounts) }

type principalKey struct{}

// FromContext returns the caller of a request the interceptors let
// through.
func FromContext(ctx context.Context) (*Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(*Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// Authenticator checks tokens and requests.
type Authenticator struct {
	cfg         Config
	log         *slog.Logger
	serviceHash []byte

	mu    sync.Mutex
	cache map[string]cached
	// watches counts the open WatchChanges streams per token id.
	watches map[string]int
}

// MaxWatchesPerToken is the most WatchChanges streams one device token
// may have open at once on one store replica (or two per account of its
// scope, when that is more); one more is RESOURCE_EXHAUSTED. A device
// needs one per account it follows; the cap keeps a leaked or looping
// client from holding unbounded server goroutines and polls. Admin and
// service tokens are operators' (`mailbus watch` follows every account)
// and have no cap.
const MaxWatchesPerToken = 32

type cached struct {
	hash      []byte
	principal *Principal
	expires   time.Time
}

// New makes an Authenticator.
func New(cfg Config) (*Authenticator, error) {
	if cfg.Directory == nil {
		return nil, errors.New("auth: no directory")
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.RecheckInterval <= 0 {
		cfg.RecheckInterval = DefaultRecheckInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{cfg: cfg, log: cfg.Logger, cache: map[string]cached{}, watches: map[string]int{}}
	if cfg.ServiceToken != "" {
		a.serviceHash = Hash(cfg.ServiceToken)
	}
	return a, nil
}

var (
	errNoToken      = status.Error(codes.Unauthenticated, "no API token: send the metadata \"authorization: Bearer <token>\"")
	errBadToken     = status.Error(codes.Unauthenticated, "unknown or revoked API token")
	errTokenRevoked = status.Error(codes.Unauthenticated, "the API token was revoked")
	errTokenExpired = status.Error(codes.Unauthenticated, "the API token has expired: make a new one (mailbus token create)")
)

// tokenFrom takes the bearer token out of the incoming metadata.
func tokenFrom(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(apitoken.MetadataKey)
	if len(vals) == 0 {
		return "", errNoToken
	}
	if len(vals) > 1 {
		return "", status.Error(codes.Unauthenticated, "more than one authorization header")
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, apitoken.Scheme) {
		return "", status.Error(codes.Unauthenticated, "authorization metadata must be \"Bearer <token>\"")
	}
	return strings.TrimSpace(tok), nil
}

// Authenticate returns the principal of a token.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*Principal, error) {
	id, hash, err := Parse(token)
	if err != nil {
		return nil, errBadToken
	}
	if a.serviceHash != nil && subtle.ConstantTimeCompare(hash, a.serviceHash) == 1 {
		return &Principal{TokenID: "internal", Name: "in-process fetchers", Role: mailbusv1.TokenRole_TOKEN_ROLE_SERVICE}, nil
	}
	now := time.Now()
	a.mu.Lock()
	c, ok := a.cache[id]
	a.mu.Unlock()
	if ok && now.Before(c.expires) {
		if subtle.ConstantTimeCompare(hash, c.hash) != 1 {
			return nil, errBadToken
		}
		return c.principal, nil
	}
	st, err := a.cfg.Directory.TokenByID(ctx, id)
	switch {
	case errors.Is(err, db.ErrNotFound):
		return nil, errBadToken
	case err != nil:
		if ctx.Err() != nil {
			return nil, status.FromContextError(ctx.Err()).Err()
		}
		a.log.ErrorContext(ctx, "token lookup failed", "token_id", id, "err", err)
		return nil, status.Error(codes.Unavailable, "cannot check the API token now; try again")
	}
	if subtle.ConstantTimeCompare(hash, st.Hash) != 1 || st.Token.RevokeTime != nil {
		a.forget(id)
		return nil, errBadToken
	}
	// A cached token is reused until the cache entry or the token expires,
	// whichever comes first.
	until := now.Add(a.cfg.CacheTTL)
	if exp := st.Token.ExpireTime; exp != nil {
		if !now.Before(exp.AsTime()) {
			a.forget(id)
			return nil, errTokenExpired
		}
		if exp.AsTime().Before(until) {
			until = exp.AsTime()
		}
	}
	p := &Principal{TokenID: id, Name: st.Token.Name, Role: st.Token.Role, ReadOnly: st.Token.ReadOnly, accounts: st.Token.AccountIds}
	a.mu.Lock()
	if len(a.cache) >= maxCached {
		clear(a.cache)
	}
	a.cache[id] = cached{hash: st.Hash, principal: p, expires: until}
	a.mu.Unlock()
	return p, nil
}

// Forget drops a token from the cache, so that a revoke on this replica
// takes effect at once.
func (a *Authenticator) Forget(id string) { a.forget(id) }

func (a *Authenticator) forget(id string) {
	a.mu.Lock()
	delete(a.cache, id)
	a.mu.Unlock()
}
