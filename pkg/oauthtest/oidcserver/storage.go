package oidcserver

// The in-memory op.Storage, adapted from zitadel/oidc's
// example/server/storage (Apache-2.0): only what a mail client's flows
// need, with a settable access token lifetime, refresh tokens that rotate
// on every use, PKCE required, and a device poll that answers slow_down
// when asked to.

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"fmt"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/google/uuid"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage keeps the server's state; its methods are safe for concurrent
// use.
type storage struct {
	lifetime time.Duration
	user     User
	clients  map[string]*client
	key      signingKey

	mu           sync.Mutex
	authRequests map[string]*authRequest
	codes        map[string]string // code -> auth request id
	access       map[string]*accessToken
	refresh      map[string]*refreshToken
	devices      map[string]*deviceEntry // device code -> entry
	userCodes    map[string]string       // user code -> device code
	slowDown     int                     // device polls still to answer slow_down
	polls        []time.Time             // device token polls
	refreshes    int                     // refresh_token grants answered
}

type accessToken struct {
	id, clientID, subject, refreshID string
	audience, scopes                 []string
	expiry                           time.Time
}

type refreshToken struct {
	token, clientID, subject string
	audience, scopes, amr    []string
	authTime                 time.Time
	accessID                 string
}

type deviceEntry struct {
	userCode string
	state    *op.DeviceAuthorizationState
}

func newStorage(lifetime time.Duration, user User, clients ...*client) *storage {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	s := &storage{lifetime: lifetime, user: user, clients: map[string]*client{},
		key:          signingKey{id: uuid.NewString(), key: key},
		authRequests: map[string]*authRequest{}, codes: map[string]string{}, access: map[string]*accessToken{},
		refresh: map[string]*refreshToken{}, devices: map[string]*deviceEntry{}, userCodes: map[string]string{}}
	for _, c := range clients {
		s.clients[c.id] = c
	}
	return s
}

var errNotFound = errors.New("not found")

// login marks an authorization request as done by the user, after
// checking the password.
func (s *storage) login(id, username, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authRequests[id]
	if !ok {
		return fmt.Errorf("authorization request %w", errNotFound)
	}
	if username != s.user.Username || password != s.user.Password {
		return errors.New("wrong username or password")
	}
	r.subject, r.done, r.authTime = s.user.ID, true, time.Now()
	return nil
}

func (s *storage) authRequest(id string) (*authRequest, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.authRequests[id]
	return r, ok
}

// CreateAuthRequest implements op.Storage. It refuses a request without
// PKCE S256, as a server for native clients should (RFC 8252 section 8.1).
func (s *storage) CreateAuthRequest(_ context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	if req.CodeChallenge == "" || req.CodeChallengeMethod != oidc.CodeChallengeMethodS256 {
		return nil, oidc.ErrInvalidRequest().WithDescription("PKCE with code_challenge_method S256 is required")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &authRequest{id: uuid.NewString(), req: *req, subject: userID}
	s.authRequests[r.id] = r
	return r, nil
}

// AuthRequestByID implements op.Storage.
func (s *storage) AuthRequestByID(_ context.Context, id string) (op.AuthRequest, error) {
	r, ok := s.authRequest(id)
	if !ok {
		return nil, fmt.Errorf("authorization request %w", errNotFound)
	}
	return r, nil
}

// AuthRequestByCode implements op.Storage.
func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	id, ok := s.codes[code]
	s.mu.Unlock()
	if !ok {
		return nil, errors.New("code invalid or used")
	}
	return s.AuthRequestByID(ctx, id)
}

// SaveAuthCode implements op.Storage.
func (s *storage) SaveAuthCode(_ context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest implements op.Storage: a code is used once.
func (s *storage) DeleteAuthRequest(_ context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	for code, rid := range s.codes {
		if rid == id {
			delete(s.codes, code)
		}
	}
	return nil
}

// newAccess stores an access token; s.mu is held.
func (s *storage) newAccess(clientID, refreshID, subject string, audience, scopes []string) *accessToken {
	t := &accessToken{id: uuid.NewString(), clientID: clientID, refreshID: refreshID, subject: subject,
		audience: audience, scopes: scopes, expiry: time.Now().Add(s.lifetime)}
	s.access[t.id] = t
	return t
}

// CreateAccessToken implements op.Storage.
func (s *storage) CreateAccessToken(_ context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	clientID := ""
	if c, ok := req.(interface{ GetClientID() string }); ok {
		clientID = c.GetClientID()
	}
	t := s.newAccess(clientID, "", req.GetSubject(), req.GetAudience(), req.GetScopes())
	return t.id, t.expiry, nil
}

// CreateAccessAndRefreshTokens implements op.Storage: a new grant (code
// or device flow) gets a new refresh token; a refresh rotates it (the old
// one is refused from then on, with its access token).
func (s *storage) CreateAccessAndRefreshTokens(_ context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var clientID string
	var authTime time.Time
	var amr []string
	switch r := req.(type) {
	case *authRequest:
		clientID, authTime, amr = r.req.ClientID, r.authTime, r.GetAMR()
	case *op.DeviceAuthorizationState:
		clientID, authTime, amr = r.ClientID, r.AuthTime, r.AMR
	case *refreshRequest:
		clientID, authTime, amr = r.clientID, r.authTime, r.amr
	default:
		return "", "", time.Time{}, fmt.Errorf("token request of type %T not supported", req)
	}
	if current != "" {
		old, ok := s.refresh[current]
		if !ok {
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
		delete(s.refresh, current)
		delete(s.access, old.accessID)
		s.refreshes++
	}
	rt := &refreshToken{token: "rt-" + uuid.NewString(), clientID: clientID, subject: req.GetSubject(),
		audience: req.GetAudience(), scopes: req.GetScopes(), amr: amr, authTime: authTime}
	at := s.newAccess(clientID, rt.token, rt.subject, rt.audience, rt.scopes)
	rt.accessID = at.id
	s.refresh[rt.token] = rt
	return at.id, rt.token, at.expiry, nil
}

// TokenRequestByRefreshToken implements op.Storage.
func (s *storage) TokenRequestByRefreshToken(_ context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return nil, errors.New("refresh token unknown, used or revoked")
	}
	return &refreshRequest{refreshToken: *rt}, nil
}

// TerminateSession implements op.Storage.
func (s *storage) TerminateSession(_ context.Context, userID, clientID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, rt := range s.refresh {
		if rt.subject == userID && rt.clientID == clientID {
			delete(s.access, rt.accessID)
			delete(s.refresh, id)
		}
	}
	return nil
}

// GetRefreshTokenInfo implements op.Storage.
func (s *storage) GetRefreshTokenInfo(_ context.Context, _ string, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refresh[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

// RevokeToken implements op.Storage (RFC 7009).
func (s *storage) RevokeToken(_ context.Context, token, _ string, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.access[token]; ok {
		if at.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.access, token)
		return nil
	}
	if rt, ok := s.refresh[token]; ok {
		if rt.clientID != clientID {
			return oidc.ErrInvalidClient().WithDescription("token was not issued to this client")
		}
		delete(s.access, rt.accessID)
		delete(s.refresh, token)
	}
	return nil
}

// revokeAll withdraws every grant, as a user who removes the app's access.
func (s *storage) revokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.refresh)
	clear(s.access)
}

// SigningKey implements op.Storage.
func (s *storage) SigningKey(context.Context) (op.SigningKey, error) { return &s.key, nil }

// SignatureAlgorithms implements op.Storage.
func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

// KeySet implements op.Storage.
func (s *storage) KeySet(context.Context) ([]op.Key, error) { return []op.Key{&publicKey{s.key}}, nil }

// GetClientByClientID implements op.Storage.
func (s *storage) GetClientByClientID(_ context.Context, id string) (op.Client, error) {
	c, ok := s.clients[id]
	if !ok {
		return nil, fmt.Errorf("client %w", errNotFound)
	}
	return c, nil
}

// AuthorizeClientIDSecret implements op.Storage.
func (s *storage) AuthorizeClientIDSecret(_ context.Context, id, secret string) error {
	c, ok := s.clients[id]
	if !ok || c.secret == "" || c.secret != secret {
		return errors.New("unknown client or wrong secret")
	}
	return nil
}

// SetUserinfoFromScopes implements op.Storage (deprecated, empty).
func (s *storage) SetUserinfoFromScopes(context.Context, *oidc.UserInfo, string, string, []string) error {
	return nil
}

// SetUserinfoFromRequest implements op.CanSetUserinfoFromRequest.
func (s *storage) SetUserinfoFromRequest(_ context.Context, info *oidc.UserInfo, _ op.IDTokenRequest, _ []string) error {
	s.userinfo(info)
	return nil
}

func (s *storage) userinfo(info *oidc.UserInfo) {
	info.Subject = s.user.ID
	info.Email = s.user.Email
	info.EmailVerified = true
	info.PreferredUsername = s.user.Email
}

func (s *storage) validAccess(id string) (*accessToken, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.access[id]
	return t, ok && time.Now().Before(t.expiry)
}

// SetUserinfoFromToken implements op.Storage.
func (s *storage) SetUserinfoFromToken(_ context.Context, info *oidc.UserInfo, tokenID, _, _ string) error {
	if _, ok := s.validAccess(tokenID); !ok {
		return errors.New("token invalid or expired")
	}
	s.userinfo(info)
	return nil
}

// SetIntrospectionFromToken implements op.Storage: any client of the
// server (a mail server's, typically) may introspect; the answer names
// the user by email and preferred_username.
func (s *storage) SetIntrospectionFromToken(_ context.Context, in *oidc.IntrospectionResponse, tokenID, _, _ string) error {
	t, ok := s.validAccess(tokenID)
	if !ok {
		return errors.New("token invalid or expired")
	}
	info := new(oidc.UserInfo)
	s.userinfo(info)
	in.SetUserInfo(info)
	in.Username = s.user.Email
	in.Scope = t.scopes
	in.ClientID = t.clientID
	in.Expiration = oidc.FromTime(t.expiry)
	return nil
}

// GetPrivateClaimsFromScopes implements op.Storage.
func (s *storage) GetPrivateClaimsFromScopes(context.Context, string, string, []string) (map[string]any, error) {
	return nil, nil
}

// GetKeyByIDAndClientID implements op.Storage (no JWT profile here).
func (s *storage) GetKeyByIDAndClientID(context.Context, string, string) (*jose.JSONWebKey, error) {
	return nil, errors.New("JWT profile not supported")
}

// ValidateJWTProfileScopes implements op.Storage (no JWT profile here).
func (s *storage) ValidateJWTProfileScopes(context.Context, string, []string) ([]string, error) {
	return nil, errors.New("JWT profile not supported")
}

// Health implements op.Storage.
func (s *storage) Health(context.Context) error { return nil }

// StoreDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *storage) StoreDeviceAuthorization(_ context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.clients[clientID]; !ok {
		return fmt.Errorf("client %w", errNotFound)
	}
	if _, ok := s.userCodes[userCode]; ok {
		return op.ErrDuplicateUserCode
	}
	s.devices[deviceCode] = &deviceEntry{userCode: userCode, state: &op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires}}
	s.userCodes[userCode] = deviceCode
	return nil
}

// errSlowDown wraps context.DeadlineExceeded, which the op answers with
// slow_down (the only way a storage can ask for it).
var errSlowDown = fmt.Errorf("polling too fast: %w", context.DeadlineExceeded)

// GetDeviceAuthorizatonState implements op.DeviceAuthorizationStorage; it
// records every poll.
func (s *storage) GetDeviceAuthorizatonState(_ context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.polls = append(s.polls, time.Now())
	e, ok := s.devices[deviceCode]
	if !ok || e.state.ClientID != clientID {
		return nil, errors.New("device code not found for the client")
	}
	if s.slowDown > 0 {
		s.slowDown--
		return nil, errSlowDown
	}
	st := *e.state
	return &st, nil
}

// GetDeviceAuthorizationByUserCode implements op.DeviceAuthorizationStorage.
func (s *storage) GetDeviceAuthorizationByUserCode(_ context.Context, userCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.devices[s.userCodes[userCode]]
	if !ok {
		return nil, errors.New("user code not found")
	}
	st := *e.state
	return &st, nil
}

// CompleteDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *storage) CompleteDeviceAuthorization(_ context.Context, userCode, subject string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.devices[s.userCodes[userCode]]
	if !ok {
		return errors.New("user code not found")
	}
	e.state.Subject, e.state.Done, e.state.AuthTime, e.state.AMR = subject, true, time.Now(), []string{"pwd"}
	return nil
}

// DenyDeviceAuthorization implements op.DeviceAuthorizationStorage.
func (s *storage) DenyDeviceAuthorization(_ context.Context, userCode string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.devices[s.userCodes[userCode]]
	if !ok {
		return errors.New("user code not found")
	}
	e.state.Denied = true
	return nil
}

type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ signingKey }

func (k *publicKey) ID() string                         { return k.id }
func (k *publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *publicKey) Use() string                        { return "sig" }
func (k *publicKey) Key() any                           { return &k.key.PublicKey }
