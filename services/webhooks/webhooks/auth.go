package webhooks

import (
	"context"
	"crypto/sha256"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// adminCacheTTL is how long a token the store accepted as an admin token
// is trusted without asking again: a revoked token stops working on the
// service's own port within it.
const adminCacheTTL = 10 * time.Second

// adminCheck admits calls of the service's own gRPC port that carry an
// admin token. The store holds the tokens: the caller's token is sent to
// it with TokenService.ListTokens, which the store answers for admin
// tokens only (the same rule as every other admin method), and the answer
// is cached for adminCacheTTL.
type adminCheck struct {
	tokens mailbusv1.TokenServiceClient // nil: no store to ask

	mu    sync.Mutex
	valid map[[32]byte]time.Time
}

func newAdminCheck(conn *grpc.ClientConn) *adminCheck {
	c := &adminCheck{valid: map[[32]byte]time.Time{}}
	if conn != nil {
		c.tokens = mailbusv1.NewTokenServiceClient(conn)
	}
	return c
}

// unaryInterceptor guards the methods of package mailbus.v1 (health and
// reflection stay open, as on the store).
func (c *adminCheck) unaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !strings.HasPrefix(info.FullMethod, "/mailbus.v1.") {
			return handler(ctx, req)
		}
		if err := c.admit(ctx); err != nil {
			return nil, err
		}
		return handler(ctx, req)
	}
}

func (c *adminCheck) admit(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get(apitoken.MetadataKey)
	if len(vals) != 1 {
		return status.Error(codes.Unauthenticated, "an admin API token is required (authorization: Bearer <token>)")
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, apitoken.Scheme) || strings.TrimSpace(tok) == "" {
		return status.Error(codes.Unauthenticated, "authorization metadata must be \"Bearer <token>\"")
	}
	tok = strings.TrimSpace(tok)
	key := sha256.Sum256([]byte(tok))
	c.mu.Lock()
	until, ok := c.valid[key]
	c.mu.Unlock()
	if ok && time.Now().Before(until) {
		return nil
	}
	if c.tokens == nil {
		return status.Error(codes.Unavailable, "no store configured to check tokens with (--store)")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	octx := metadata.NewOutgoingContext(ctx, metadata.Pairs(apitoken.MetadataKey, apitoken.Scheme+" "+tok))
	_, err := c.tokens.ListTokens(octx, &mailbusv1.ListTokensRequest{}, grpc.MaxCallRecvMsgSize(64<<20))
	switch status.Code(err) {
	case codes.OK:
	case codes.Unauthenticated:
		return status.Error(codes.Unauthenticated, "the token is not valid")
	case codes.PermissionDenied:
		return status.Error(codes.PermissionDenied, "WebhookService needs an admin token")
	default:
		return status.Errorf(codes.Unavailable, "checking the token with the store: %v", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for k, t := range c.valid {
		if now.After(t) {
			delete(c.valid, k)
		}
	}
	c.valid[key] = now.Add(adminCacheTTL)
	return nil
}
