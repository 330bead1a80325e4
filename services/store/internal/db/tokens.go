package db

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// maxTokenNameLen bounds a token's label.
const maxTokenNameLen = 200

// StoredToken is an API token as the database keeps it: its description
// and the SHA-256 hash of its secret (never the secret).
type StoredToken struct {
	Token *mailbusv1.Token
	Hash  []byte
}

// ValidateToken checks a token description before it is stored.
func ValidateToken(t *mailbusv1.Token) error {
	if t == nil {
		return invalid("token", "required")
	}
	name := strings.TrimSpace(t.Name)
	switch {
	case name == "":
		return invalid("token.name", "required")
	case len(name) > maxTokenNameLen:
		return invalid("token.name", "longer than %d bytes", maxTokenNameLen)
	}
	switch t.Role {
	case mailbusv1.TokenRole_TOKEN_ROLE_DEVICE:
		if len(t.AccountIds) == 0 {
			return invalid("token.account_ids", "a device token needs at least one account")
		}
		if len(t.AccountIds) > 1000 {
			return invalid("token.account_ids", "more than 1000 accounts")
		}
	case mailbusv1.TokenRole_TOKEN_ROLE_ADMIN, mailbusv1.TokenRole_TOKEN_ROLE_SERVICE:
		if len(t.AccountIds) > 0 {
			return invalid("token.account_ids", "only device tokens are scoped to accounts; %s tokens reach every account", roleName(t.Role))
		}
		if t.ReadOnly {
			return invalid("token.read_only", "only device tokens can be read-only")
		}
	default:
		return invalid("token.role", "required: device, admin or service")
	}
	return nil
}

func roleName(r mailbusv1.TokenRole) string {
	return strings.ToLower(strings.TrimPrefix(r.String(), "TOKEN_ROLE_"))
}

// CreateToken stores a new token under its public id with the hash of its
// secret. The accounts of a device token must exist.
func (d *DB) CreateToken(ctx context.Context, t *mailbusv1.Token, publicID string, hash []byte) (*mailbusv1.Token, error) {
	if err := ValidateToken(t); err != nil {
		return nil, err
	}
	if publicID == "" || len(hash) == 0 {
		return nil, errors.New("db: create token: no id or hash")
	}
	var expires int64
	if t.ExpireTime != nil {
		if err := t.ExpireTime.CheckValid(); err != nil {
			return nil, invalid("token.expire_time", "%v", err)
		}
		if !t.ExpireTime.AsTime().After(d.now()) {
			return nil, invalid("token.expire_time", "%s is not in the future", t.ExpireTime.AsTime().UTC().Format(time.RFC3339))
		}
		expires = t.ExpireTime.AsTime().UnixMicro()
	}
	accounts := make([]int64, 0, len(t.AccountIds))
	seen := map[int64]bool{}
	for _, s := range t.AccountIds {
		id, err := parseID("token.account_ids", s)
		if err != nil {
			return nil, err
		}
		if !seen[id] {
			seen[id] = true
			accounts = append(accounts, id)
		}
	}
	err := d.inTx(ctx, nil, func(tx *tx) error {
		for _, a := range accounts {
			var n int
			if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM accounts WHERE id = ?`, a).Scan(&n); err != nil {
				return fmt.Errorf("db: create token: %w", err)
			}
			if n == 0 {
				return notFound("account", formatID(a))
			}
		}
		var id int64
		if err := tx.queryRow(ctx, `INSERT INTO api_tokens (public_id, name, role, read_only, secret_hash, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			publicID, strings.TrimSpace(t.Name), int(t.Role), boolInt(t.ReadOnly), hash, tx.d.nowMicros(), expires).Scan(&id); err != nil {
			if isUniqueViolation(err) {
				return fmt.Errorf("token id %q: %w", publicID, ErrConflict)
			}
			return fmt.Errorf("db: create token: %w", err)
		}
		for _, a := range accounts {
			if _, err := tx.exec(ctx, `INSERT INTO api_token_accounts (token_id, account_id) VALUES (?, ?)`, id, a); err != nil {
				return fmt.Errorf("db: create token: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	st, err := d.TokenByID(ctx, publicID)
	if err != nil {
		return nil, err
	}
	return st.Token, nil
}

// EnsureToken stores a token unless one with its public id exists already
// (revoked or not: a revoked bootstrap token stays revoked). It reports
// whether it stored it; an existing token with another hash is an error.
func (d *DB) EnsureToken(ctx context.Context, t *mailbusv1.Token, publicID string, hash []byte) (bool, error) {
	st, err := d.TokenByID(ctx, publicID)
	switch {
	case err == nil:
		if string(st.Hash) != string(hash) {
			return false, fmt.Errorf("token id %q is in use by another token: %w", publicID, ErrConflict)
		}
		return false, nil
	case !errors.Is(err, ErrNotFound):
		return false, err
	}
	if _, err := d.CreateToken(ctx, t, publicID, hash); err != nil {
		if errors.Is(err, ErrConflict) {
			// Another replica stored it meanwhile.
			return d.EnsureToken(ctx, t, publicID, hash)
		}
		return false, err
	}
	return true, nil
}

const tokenColumns = `id, public_id, name, role, read_only, secret_hash, created_at, revoked_at, expires_at`

func scanToken(s scanner) (int64, *StoredToken, error) {
	var (
		id                        int64
		t                         mailbusv1.Token
		role, readOnly            int
		hash                      []byte
		created, revoked, expires int64
	)
	if err := s.Scan(&id, &t.Id, &t.Name, &role, &readOnly, &hash, &created, &revoked, &expires); err != nil {
		return 0, nil, err
	}
	if expires != 0 {
		t.ExpireTime = timestamppb.New(time.UnixMicro(expires))
	}
	t.Role = mailbusv1.TokenRole(role)
	t.ReadOnly = readOnly != 0
	t.CreateTime = timestamppb.New(time.UnixMicro(created))
	if revoked != 0 {
		t.RevokeTime = timestamppb.New(time.UnixMicro(revoked))
	}
	return id, &StoredToken{Token: &t, Hash: hash}, nil
}

// TokenByID returns a token (revoked ones too) by its public id.
func (d *DB) TokenByID(ctx context.Context, publicID string) (*StoredToken, error) {
	id, st, err := scanToken(d.r.QueryRowContext(ctx, d.rebind(`SELECT `+tokenColumns+` FROM api_tokens WHERE public_id = ?`), publicID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, notFound("token", publicID)
	}
	if err != nil {
		return nil, fmt.Errorf("db: read token: %w", err)
	}
	if st.Token.AccountIds, err = d.tokenAccounts(ctx, id); err != nil {
		return nil, err
	}
	return st, nil
}

func (d *DB) tokenAccounts(ctx context.Context, tokenID int64) ([]string, error) {
	rows, err := d.r.QueryContext(ctx, d.rebind(`SELECT account_id FROM api_token_accounts WHERE token_id = ? ORDER BY account_id`), tokenID)
	if err != nil {
		return nil, fmt.Errorf("db: read token accounts: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var a int64
		if err := rows.Scan(&a); err != nil {
			return nil, fmt.Errorf("db: read token accounts: %w", err)
		}
		out = append(out, formatID(a))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: read token accounts: %w", err)
	}
	return out, nil
}

// ListTokens returns the tokens in creation order, without their hashes;
// revoked and expired ones only with includeRevoked.
func (d *DB) ListTokens(ctx context.Context, includeRevoked bool) ([]*mailbusv1.Token, error) {
	q := `SELECT ` + tokenColumns + ` FROM api_tokens`
	var args []any
	if !includeRevoked {
		q += ` WHERE revoked_at = 0 AND (expires_at = 0 OR expires_at > ?)`
		args = append(args, d.nowMicros())
	}
	rows, err := d.r.QueryContext(ctx, d.rebind(q+` ORDER BY id`), args...)
	if err != nil {
		return nil, fmt.Errorf("db: list tokens: %w", err)
	}
	var ids []int64
	var out []*mailbusv1.Token
	for rows.Next() {
		id, st, err := scanToken(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("db: list tokens: %w", err)
		}
		ids = append(ids, id)
		out = append(out, st.Token)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("db: list tokens: %w", err)
	}
	for i, id := range ids {
		if out[i].AccountIds, err = d.tokenAccounts(ctx, id); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// RevokeToken marks a token revoked; revoking it again changes nothing.
func (d *DB) RevokeToken(ctx context.Context, publicID string) (*mailbusv1.Token, error) {
	if publicID == "" {
		return nil, invalid("token_id", "required")
	}
	res, err := d.w.ExecContext(ctx, d.rebind(`UPDATE api_tokens SET revoked_at = ? WHERE public_id = ? AND revoked_at = 0`), d.nowMicros(), publicID)
	if err != nil {
		return nil, fmt.Errorf("db: revoke token: %w", err)
	}
	if _, err := res.RowsAffected(); err != nil {
		return nil, fmt.Errorf("db: revoke token: %w", err)
	}
	st, err := d.TokenByID(ctx, publicID)
	if err != nil {
		return nil, err
	}
	return st.Token, nil
}

// MessageAccount returns the account id of a message.
func (d *DB) MessageAccount(ctx context.Context, messageID string) (string, error) {
	id, err := parseID("message_id", messageID)
	if err != nil {
		return "", err
	}
	var acct int64
	err = d.r.QueryRowContext(ctx, d.rebind(`SELECT account_id FROM messages WHERE id = ?`), id).Scan(&acct)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("message", messageID)
	}
	if err != nil {
		return "", fmt.Errorf("db: message: %w", err)
	}
	return formatID(acct), nil
}

// ListAccountsOf is ListAccounts restricted to the accounts in ids.
func (d *DB) ListAccountsOf(ctx context.Context, ids []string, after int64, limit int, protocol mailbusv1.Protocol) ([]*mailbusv1.Account, error) {
	var want []int64
	for _, s := range ids {
		if n, err := parseID("account_id", s); err == nil && n > after {
			want = append(want, n)
		}
	}
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	var out []*mailbusv1.Account
	for _, n := range want {
		if len(out) >= limit {
			break
		}
		a, err := d.GetAccount(ctx, formatID(n))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if protocol != mailbusv1.Protocol_PROTOCOL_UNSPECIFIED && a.Protocol != protocol {
			continue
		}
		out = append(out, a)
	}
	return out, nil
}

// AccountIDByName returns the id of the account with a name.
func (d *DB) AccountIDByName(ctx context.Context, name string) (string, error) {
	if name == "" {
		return "", invalid("name", "required")
	}
	var id int64
	err := d.r.QueryRowContext(ctx, d.rebind(`SELECT id FROM accounts WHERE name = ?`), name).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", notFound("account", name)
	}
	if err != nil {
		return "", fmt.Errorf("db: account: %w", err)
	}
	return formatID(id), nil
}
