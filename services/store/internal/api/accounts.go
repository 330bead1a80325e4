package api

import (
	"context"
	"log/slog"
	"strconv"

	"github.com/mailbus/mailbus/pkg/discover"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/auth"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// Accounts implements AccountService.
type Accounts struct {
	mailbusv1.UnimplementedAccountServiceServer
	DB  *db.DB
	Log *slog.Logger
	// Changes announces created, updated and deleted accounts to the
	// fetchers' WatchAccounts streams; nil announces nothing.
	Changes *AccountChanges
	// Discoverer answers DiscoverSettings; nil looks up the internet with
	// the system's resolver.
	Discoverer *discover.Discoverer
}

// CreateAccount implements AccountService.
func (s *Accounts) CreateAccount(ctx context.Context, req *mailbusv1.CreateAccountRequest) (*mailbusv1.CreateAccountResponse, error) {
	a, err := s.DB.CreateAccount(ctx, req.GetAccount())
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	s.Log.InfoContext(ctx, "account created", "account", a.Id, "name", a.Name, "protocol", a.Protocol.String(), "host", a.Host)
	s.Changes.Announce(a.Protocol, a.Id)
	return &mailbusv1.CreateAccountResponse{Account: a}, nil
}

// GetAccount implements AccountService.
func (s *Accounts) GetAccount(ctx context.Context, req *mailbusv1.GetAccountRequest) (*mailbusv1.GetAccountResponse, error) {
	var a *mailbusv1.Account
	var err error
	switch {
	case req.AccountId != "":
		a, err = s.DB.GetAccount(ctx, req.AccountId)
	case req.Name != "":
		a, err = s.DB.GetAccountByName(ctx, req.Name)
	default:
		return nil, invalidArg("account_id", "required (or name)")
	}
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.GetAccountResponse{Account: a}, nil
}

// ListAccounts implements AccountService.
func (s *Accounts) ListAccounts(ctx context.Context, req *mailbusv1.ListAccountsRequest) (*mailbusv1.ListAccountsResponse, error) {
	size, err := pageSize("page_size", req.PageSize, 100, 1000)
	if err != nil {
		return nil, err
	}
	var after int64
	if req.PageToken != "" {
		if after, err = strconv.ParseInt(req.PageToken, 10, 64); err != nil || after < 0 {
			return nil, invalidArg("page_token", "malformed")
		}
	}
	var list []*mailbusv1.Account
	if p, ok := auth.FromContext(ctx); ok && !p.AllAccounts() {
		// A device token sees only its own accounts.
		list, err = s.DB.ListAccountsOf(ctx, p.AccountIDs(), after, size+1, req.Protocol)
	} else {
		list, err = s.DB.ListAccounts(ctx, after, size+1, req.Protocol)
	}
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	resp := &mailbusv1.ListAccountsResponse{Accounts: list}
	if len(list) > size {
		resp.Accounts = list[:size]
		resp.NextPageToken = list[size-1].Id
	}
	return resp, nil
}

// UpdateAccount implements AccountService.
func (s *Accounts) UpdateAccount(ctx context.Context, req *mailbusv1.UpdateAccountRequest) (*mailbusv1.UpdateAccountResponse, error) {
	a, err := s.DB.UpdateAccount(ctx, req.GetAccount(), req.GetUpdateMask().GetPaths())
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	s.Log.InfoContext(ctx, "account updated", "account", a.Id, "fields", req.GetUpdateMask().GetPaths(), "generation", a.Generation)
	s.Changes.Announce(a.Protocol, a.Id)
	return &mailbusv1.UpdateAccountResponse{Account: a}, nil
}

// DeleteAccount implements AccountService.
func (s *Accounts) DeleteAccount(ctx context.Context, req *mailbusv1.DeleteAccountRequest) (*mailbusv1.DeleteAccountResponse, error) {
	if err := s.DB.DeleteAccount(ctx, req.AccountId); err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	s.Log.InfoContext(ctx, "account deleted", "account", req.AccountId)
	// Its protocol is gone with it: every watcher hears of it.
	s.Changes.Announce(mailbusv1.Protocol_PROTOCOL_UNSPECIFIED, req.AccountId)
	return &mailbusv1.DeleteAccountResponse{}, nil
}

// pageSize applies a default and a maximum to a requested page size.
func pageSize(field string, n uint32, def, max int) (int, error) {
	if n == 0 {
		return def, nil
	}
	if int(n) > max {
		return 0, invalidArg(field, "at most %d", max)
	}
	return int(n), nil
}
