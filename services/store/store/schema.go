package store

import (
	"context"
	"fmt"

	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// SchemaStatus is a database's schema against this store's migrations.
type SchemaStatus = db.SchemaStatus

// Migration is one schema migration, applied or pending.
type Migration = db.Migration

// ErrSchemaNewer is a database migrated by a newer mailbus: the store
// refuses to start on it.
var ErrSchemaNewer = db.ErrSchemaNewer

// ReadSchemaStatus opens the database of cfg (DataDir or DatabaseURL)
// without migrating it and reports which migrations are applied and which
// are pending, so that an operator can see them before a rollout. A
// missing SQLite database is an error, not a new one.
func ReadSchemaStatus(ctx context.Context, cfg Config) (SchemaStatus, error) {
	d, err := openUnmigrated(ctx, cfg)
	if err != nil {
		return SchemaStatus{}, err
	}
	defer d.Close()
	st, err := d.SchemaStatus(ctx)
	if err != nil {
		return st, fmt.Errorf("store: %w", err)
	}
	return st, nil
}

// MigrateSchema applies the pending migrations to the database of cfg and
// returns their versions; the store does the same when it starts. It can
// run while older stores serve only where the migrations are additive,
// as every mailbus migration so far is (a new table or column).
func MigrateSchema(ctx context.Context, cfg Config) ([]int, error) {
	d, err := openUnmigrated(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	applied, err := d.Migrate(ctx)
	if err != nil {
		return applied, fmt.Errorf("store: %w", err)
	}
	return applied, nil
}

func openUnmigrated(ctx context.Context, cfg Config) (*db.DB, error) {
	if cfg.DatabaseURL == "" && cfg.DataDir == "" {
		return nil, fmt.Errorf("store: give a data directory or a database URL")
	}
	// Migrations read no credentials: a throwaway key opens the database.
	key, err := secretbox.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	box, err := secretbox.New(key)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	d, err := db.Open(ctx, db.Config{URL: cfg.DatabaseURL, DataDir: cfg.DataDir, Secrets: box, NoMigrate: true})
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	return d, nil
}
