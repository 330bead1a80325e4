package auth

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// guardedPrefix is the package whose services need a token; others (health,
// reflection) stay open.
const guardedPrefix = "/" + "mailbus.v1."

var errNotFound = status.Error(codes.NotFound, "not found")

// UnaryInterceptor authenticates and authorises unary calls.
func (a *Authenticator) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, guardedPrefix) {
			return handler(ctx, req)
		}
		p, r, err := a.admit(ctx, info.FullMethod)
		if err != nil {
			return nil, err
		}
		if err := a.authorize(ctx, p, r, req); err != nil {
			return nil, err
		}
		return handler(WithPrincipal(ctx, p), req)
	}
}

// StreamInterceptor authenticates and authorises streaming calls, and ends
// them with UNAUTHENTICATED once their token is revoked.
func (a *Authenticator) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, guardedPrefix) {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		p, r, err := a.admit(ctx, info.FullMethod)
		if err != nil {
			return err
		}
		token, _ := tokenFrom(ctx)
		if info.FullMethod == mailbusv1.SyncService_WatchChanges_FullMethodName && p.Role == mailbusv1.TokenRole_TOKEN_ROLE_DEVICE {
			release, err := a.openWatch(p.TokenID, max(MaxWatchesPerToken, 2*len(p.accounts)))
			if err != nil {
				return err
			}
			defer release()
		}
		ctx, cancel := context.WithCancel(WithPrincipal(ctx, p))
		defer cancel()
		w := &guardedStream{ServerStream: ss, ctx: ctx, a: a, p: p, r: r, checkFirst: r.targets != nil && !p.AllAccounts()}
		var revoked error
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			revoked = a.watchToken(ctx, token)
			if revoked != nil {
				cancel()
			}
		}()
		err = handler(srv, w)
		cancel()
		wg.Wait()
		if revoked != nil {
			return revoked
		}
		return err
	}
}

// Admit refuses a call of a mailbus.v1 method, from its method and
// headers (md) and before its body is read, when its token is missing,
// malformed, unknown, revoked or expired, with the error the interceptors
// give; any other call (another service, a token that works, or one that
// cannot be checked now) goes on to the interceptors, which check it
// fully. Served as serving.Web.Admit (for every protocol: grpc-go's
// InTapHandle for native gRPC, before vanguard for the rest), it keeps a
// caller without a token from making the store read a request body first.
func (a *Authenticator) Admit(ctx context.Context, method string, md metadata.MD) error {
	if !strings.HasPrefix(method, guardedPrefix) {
		return nil
	}
	token, err := tokenFrom(metadata.NewIncomingContext(ctx, md))
	if err != nil {
		return err
	}
	if _, err := a.Authenticate(ctx, token); status.Code(err) == codes.Unauthenticated {
		return err
	}
	return nil
}

// watchToken re-checks a stream's token until ctx ends; it returns the
// error to end the stream with once the token no longer works (revoked,
// or expired).
func (a *Authenticator) watchToken(ctx context.Context, token string) error {
	t := time.NewTicker(a.cfg.RecheckInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		_, err := a.Authenticate(ctx, token)
		if ctx.Err() != nil {
			return nil
		}
		if errors.Is(err, errTokenExpired) {
			return errTokenExpired
		}
		if status.Code(err) == codes.Unauthenticated {
			return errTokenRevoked
		}
		// Other errors (the database briefly unavailable) keep the stream;
		// the next tick checks again.
	}
}

// guardedStream checks the first request of a streaming call against the
// device token's scope, and carries the principal and the revocation
// context.
type guardedStream struct {
	grpc.ServerStream
	ctx        context.Context
	a          *Authenticator
	p          *Principal
	r          rule
	checkFirst bool
}

func (s *guardedStream) Context() context.Context { return s.ctx }

func (s *guardedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.checkFirst {
		s.checkFirst = false
		return s.a.authorize(s.ctx, s.p, s.r, m)
	}
	return nil
}

// admit authenticates the caller and checks the role against the method;
// the scope of a device token is checked by authorize.
func (a *Authenticator) admit(ctx context.Context, method string) (*Principal, rule, error) {
	token, err := tokenFrom(ctx)
	if err != nil {
		return nil, rule{}, err
	}
	p, err := a.Authenticate(ctx, token)
	if err != nil {
		a.log.DebugContext(ctx, "call refused", "method", method, "err", err)
		return nil, rule{}, err
	}
	r, ok := rules[method]
	if !ok {
		return nil, rule{}, status.Errorf(codes.PermissionDenied, "%s has no access rule", method)
	}
	deny := func() (*Principal, rule, error) {
		a.log.DebugContext(ctx, "call refused", "method", method, "token_id", p.TokenID, "role", p.Role.String())
		return nil, rule{}, status.Errorf(codes.PermissionDenied, "%s token may not call %s", withArticle(roleWord(p.Role)), method)
	}
	switch p.Role {
	case mailbusv1.TokenRole_TOKEN_ROLE_ADMIN:
		if r.access == accessService {
			return deny()
		}
	case mailbusv1.TokenRole_TOKEN_ROLE_SERVICE:
		if r.access != accessRead && r.access != accessService {
			return deny()
		}
	case mailbusv1.TokenRole_TOKEN_ROLE_DEVICE:
		// A method that names an account is checked against the scope
		// first (NOT_FOUND), then for the access (authorize).
		if r.access == accessService || (r.targets == nil && r.access != accessRead) {
			return deny()
		}
	default:
		return deny()
	}
	return p, r, nil
}

// authorize checks a device token's scope, then its access, for one
// request.
func (a *Authenticator) authorize(ctx context.Context, p *Principal, r rule, req any) error {
	if p.AllAccounts() {
		return nil
	}
	if r.targets != nil {
		for _, t := range r.targets(req) {
			if t.id == "" {
				return status.Errorf(codes.InvalidArgument, "%s: required", t.field)
			}
			acct, err := a.accountOf(ctx, t)
			if err != nil {
				return err
			}
			if !p.CanSee(acct) {
				return errNotFound
			}
		}
	}
	switch {
	case r.access == accessAdmin:
		return status.Error(codes.PermissionDenied, "only an admin token may do this")
	case r.access == accessWrite && p.ReadOnly:
		return status.Error(codes.PermissionDenied, "this API token is read-only")
	}
	return nil
}

// accountOf resolves the account an object belongs to. An object that does
// not exist and a malformed id are NOT_FOUND, like an object of another
// account.
func (a *Authenticator) accountOf(ctx context.Context, t ref) (string, error) {
	var acct string
	var err error
	switch t.kind {
	case refAccount:
		return t.id, nil
	case refAccountName:
		acct, err = a.cfg.Directory.AccountIDByName(ctx, t.id)
	case refMailbox:
		acct, err = a.cfg.Directory.MailboxAccount(ctx, t.id)
	case refMessage:
		acct, err = a.cfg.Directory.MessageAccount(ctx, t.id)
	default:
		return "", status.Error(codes.Internal, "unknown reference")
	}
	switch {
	case err == nil:
		return acct, nil
	case errors.Is(err, db.ErrNotFound), errors.Is(err, db.ErrInvalid):
		return "", errNotFound
	case ctx.Err() != nil:
		return "", status.FromContextError(ctx.Err()).Err()
	}
	a.log.ErrorContext(ctx, "authorisation lookup failed", "err", err)
	return "", status.Error(codes.Internal, "internal error; the store's log has the detail")
}

func roleWord(r mailbusv1.TokenRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "TOKEN_ROLE_"))
}

// withArticle puts "a" or "an" before a word: "an admin", "a device".
func withArticle(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an " + word
	}
	return "a " + word
}

// openWatch counts a WatchChanges stream of a token, refusing one above
// limit; release uncounts it.
func (a *Authenticator) openWatch(tokenID string, limit int) (release func(), err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.watches[tokenID] >= limit {
		return nil, status.Errorf(codes.ResourceExhausted, "this API token has %d WatchChanges streams open, the most allowed; close one first", limit)
	}
	a.watches[tokenID]++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.watches[tokenID]--; a.watches[tokenID] <= 0 {
			delete(a.watches, tokenID)
		}
	}, nil
}
