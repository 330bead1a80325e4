package api

import (
	"context"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/auth"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// Tokens implements TokenService.
type Tokens struct {
	mailbusv1.UnimplementedTokenServiceServer
	DB   *db.DB
	Log  *slog.Logger
	Auth *auth.Authenticator
}

// CreateToken implements TokenService.
func (s *Tokens) CreateToken(ctx context.Context, req *mailbusv1.CreateTokenRequest) (*mailbusv1.CreateTokenResponse, error) {
	if err := db.ValidateToken(req.GetToken()); err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	if req.GetToken().GetRole() == mailbusv1.TokenRole_TOKEN_ROLE_SERVICE {
		// A service token reads every upstream password; it comes only from
		// the store's bootstrap (--service-token-file, or in memory in
		// mailbus serve), so that an admin token does not reach the
		// passwords (decision 0016).
		return nil, status.Error(codes.PermissionDenied, "service tokens are not made through the API: give the store --service-token-file (it creates the file with a new token) and the fetchers the same file with --token-file")
	}
	secret, id, hash, err := auth.NewToken()
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	t, err := s.DB.CreateToken(ctx, req.GetToken(), id, hash)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	s.Log.InfoContext(ctx, "API token created", "token_id", t.Id, "name", t.Name, "role", t.Role.String(), "accounts", t.AccountIds, "read_only", t.ReadOnly, "by", caller(ctx))
	return &mailbusv1.CreateTokenResponse{Token: t, Secret: secret}, nil
}

// ListTokens implements TokenService.
func (s *Tokens) ListTokens(ctx context.Context, req *mailbusv1.ListTokensRequest) (*mailbusv1.ListTokensResponse, error) {
	list, err := s.DB.ListTokens(ctx, req.IncludeRevoked)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ListTokensResponse{Tokens: list}, nil
}

// RevokeToken implements TokenService.
func (s *Tokens) RevokeToken(ctx context.Context, req *mailbusv1.RevokeTokenRequest) (*mailbusv1.RevokeTokenResponse, error) {
	t, err := s.DB.RevokeToken(ctx, req.TokenId)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	if s.Auth != nil {
		s.Auth.Forget(t.Id)
	}
	s.Log.InfoContext(ctx, "API token revoked", "token_id", t.Id, "name", t.Name, "by", caller(ctx))
	return &mailbusv1.RevokeTokenResponse{Token: t}, nil
}

// GetCallerToken implements TokenService: the calling token, as the
// interceptors authenticated it, without its secret.
func (s *Tokens) GetCallerToken(ctx context.Context, _ *mailbusv1.GetCallerTokenRequest) (*mailbusv1.GetCallerTokenResponse, error) {
	p, ok := auth.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no token on the call")
	}
	t := &mailbusv1.Token{Id: p.TokenID, Name: p.Name, Role: p.Role, ReadOnly: p.ReadOnly}
	if !p.AllAccounts() {
		t.AccountIds = p.AccountIDs()
	}
	return &mailbusv1.GetCallerTokenResponse{Token: t}, nil
}

// caller names the token of a request for logs.
func caller(ctx context.Context) string {
	if p, ok := auth.FromContext(ctx); ok {
		return p.TokenID
	}
	return ""
}
