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

// ErrSchemaPending is a database with schema migrations this mailbus has
// and the database has not applied yet: RotateSecrets refuses it rather
// than migrating the schema under stores that may be older.
var ErrSchemaPending = errors.New("the database has schema migrations pending")

// RotateSecrets seals every stored upstream credential under cfg.SecretKey,
// opening the ones sealed under a key of cfg.OldSecretKeys. It opens the
// database of cfg (DataDir or DatabaseURL) itself and may run while stores
// serve it, provided they hold both keys (the new one as primary or as an
// old key): a credential a store changes meanwhile is read again, never
// overwritten. It never migrates the schema: a database with migrations
// pending is ErrSchemaPending (a newer mailbus CLI than the stores serving
// it), and one migrated by a newer mailbus is ErrSchemaNewer. Credentials
// that open with none of the keys are reported in
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
	// Opening with migrations would upgrade the schema under the stores
	// serving it, which then refuse to start on it.
	database, err := db.Open(ctx, db.Config{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Secrets: box, MaxMessageSize: cfg.MaxMessageSize, NoMigrate: true})
	if err != nil {
		return RotateResult{}, fmt.Errorf("store: rotate: %w", err)
	}
	defer database.Close()
	st, err := database.SchemaStatus(ctx)
	if err != nil {
		return RotateResult{}, fmt.Errorf("store: rotate: %w", err)
	}
	switch {
	case st.Newer():
		return RotateResult{}, fmt.Errorf("store: rotate: %w: it is at schema version %d, this mailbus knows versions up to %d; rotate with the newer mailbus",
			db.ErrSchemaNewer, st.Version, st.Known)
	case st.Pending() > 0:
		return RotateResult{}, fmt.Errorf("store: rotate: %w: it is at schema version %d of %d. "+
			"Run 'mailbus-store migrate up' first (or upgrade the stores, which migrate it when they start), then rotate",
			ErrSchemaPending, st.Version, st.Known)
	}
	res, err := database.RotateSecrets(ctx)
	if err != nil {
		return res, fmt.Errorf("store: rotate: %w", err)
	}
	return res, nil
}
