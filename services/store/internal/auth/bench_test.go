package auth

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// directory is an in-memory Directory: one token, mailbox 7 in account 1.
type directory struct{ tok *db.StoredToken }

func (d directory) TokenByID(_ context.Context, id string) (*db.StoredToken, error) {
	if id != d.tok.Token.Id {
		return nil, db.ErrNotFound
	}
	return d.tok, nil
}
func (directory) MailboxAccount(context.Context, string) (string, error) { return "1", nil }
func (directory) MessageAccount(context.Context, string) (string, error) { return "1", nil }
func (directory) AccountIDByName(context.Context, string) (string, error) {
	return "1", nil
}

// BenchmarkUnaryDeviceCall measures what the interceptor adds to one call
// of a device token that names a mailbox (a cached token, one mailbox
// lookup, here in memory: the real lookup is one indexed read).
func BenchmarkUnaryDeviceCall(b *testing.B) {
	token, id, hash, err := NewToken()
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(Config{Directory: directory{tok: &db.StoredToken{
		Token: &mailbusv1.Token{Id: id, Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{"1"}}, Hash: hash,
	}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+token))
	info := &grpc.UnaryServerInfo{FullMethod: mailbusv1.MailboxService_ListMessages_FullMethodName}
	req := &mailbusv1.ListMessagesRequest{MailboxId: "7"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	intercept := a.UnaryInterceptor()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := intercept(ctx, req, info, handler); err != nil {
			b.Fatal(err)
		}
	}
}
