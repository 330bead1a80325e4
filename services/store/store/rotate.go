package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// RotateResult counts what RotateSecrets did.
type RotateResult = db.RotateResult

// SQLiteFileName is the SQLite database in Config.DataDir.
const SQLiteFileName = db.SQLiteFileName

// RotateSecrets seals every stored upstream credential under cfg.SecretKey,
// opening the ones sealed under a key of cfg.OldSecretKeys. It opens the
// database of cfg (DataDir or DatabaseURL) itself and may run while stores
// serve it, provided they hold both keys (the new one as primary or as an
// old key): a credential a store changes meanwhile is read again, never
// overwritten. Credentials that open with none of the keys are reported in
// RotateResult.Failed and left as they are.
func RotateSecrets(ctx context.Context, cfg Config) (RotateResult, error) {
	if cfg.SecretKey == nil {
		return RotateResult{}, errors.New("store: rotate: no new key")
	}
	if cfg.DatabaseURL == "" && cfg.DataDir == "" {
		return RotateResult{}, errors.New("store: rotate: give a data directory or a database URL")
	}
	box, err := secretbox.New(append([][]byte{cfg.SecretKey}, cfg.OldSecretKeys...)...)
	if err != nil {
		return RotateResult{}, fmt.Errorf("store: rotate: %w", err)
	}
	database, err := db.Open(ctx, db.Config{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Secrets: box, MaxMessageSize: cfg.MaxMessageSize})
	if err != nil {
		return RotateResult{}, fmt.Errorf("store: rotate: %w", err)
	}
	defer database.Close()
	res, err := database.RotateSecrets(ctx)
	if err != nil {
		return res, fmt.Errorf("store: rotate: %w", err)
	}
	return res, nil
}
