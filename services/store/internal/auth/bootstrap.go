package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// TokenStore is where a bootstrap token is registered; *db.DB is one.
type TokenStore interface {
	EnsureToken(ctx context.Context, t *mailbusv1.Token, publicID string, hash []byte) (bool, error)
}

// EnsureTokenFile makes the token in a file work: when the file is
// missing it is created (mode 0600) with a new token; then the token is
// registered with the role and name unless it is known already (a revoked
// one stays revoked). It reports whether it created the file. Several
// store replicas may race on one file: one creates it, the others read it.
func EnsureTokenFile(ctx context.Context, store TokenStore, path string, role mailbusv1.TokenRole, name string) (bool, error) {
	created := false
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		token, _, _, err := NewToken()
		if err != nil {
			return false, err
		}
		if created, err = writeNew(path, token); err != nil {
			return false, err
		}
	}
	token, err := apitoken.ReadFile(path)
	if err != nil {
		return false, err
	}
	id, hash, err := Parse(token)
	if err != nil {
		return false, fmt.Errorf("token file %s: %w", path, err)
	}
	if _, err := store.EnsureToken(ctx, &mailbusv1.Token{Name: name, Role: role}, id, hash); err != nil {
		if errors.Is(err, db.ErrConflict) {
			return false, fmt.Errorf("token file %s: its id is taken by another token: make a new file", path)
		}
		return false, fmt.Errorf("token file %s: %w", path, err)
	}
	return created, nil
}

// writeNew writes a token to a new file atomically (a temporary file,
// linked into place): a reader never sees half a token, and of two
// writers one wins and the other reports false.
func writeNew(path, token string) (bool, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("token file: %w", err)
	}
	f, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return false, fmt.Errorf("token file: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return false, fmt.Errorf("token file: %w", err)
	}
	if _, err := f.WriteString(token + "\n"); err != nil {
		f.Close()
		return false, fmt.Errorf("token file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("token file: %w", err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("token file: %w", err)
	}
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("token file: %w", err)
	}
	return true, nil
}
