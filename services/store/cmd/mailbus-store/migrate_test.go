package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mailbus/mailbus/services/store/internal/dbtest"
	"github.com/mailbus/mailbus/services/store/store"
)

// TestMigrate runs "mailbus-store migrate status|up" on a database at
// schema version 0, on SQLite and PostgreSQL: status lists every migration
// as pending and changes nothing, up applies them, and on a database a
// newer mailbus migrated, status and up exit 1 saying so and the store
// refuses to start (issue 16).
func TestMigrate(t *testing.T) {
	backends := []struct {
		name string
		// setUp returns the flags naming an empty database, and a
		// connection to it.
		setUp func(t *testing.T) ([]string, *sql.DB, store.Config)
	}{
		{name: "sqlite", setUp: func(t *testing.T) ([]string, *sql.DB, store.Config) {
			dir := t.TempDir()
			if err := os.Chmod(dir, 0o700); err != nil { // t.TempDir is 0755: refused as a data directory
				t.Fatal(err)
			}
			path := filepath.Join(dir, store.SQLiteFileName)
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			conn, err := sql.Open("sqlite", path)
			if err != nil {
				t.Fatal(err)
			}
			return []string{"--data", dir}, conn, store.Config{DataDir: dir}
		}},
		{name: "postgres", setUp: func(t *testing.T) ([]string, *sql.DB, store.Config) {
			url := dbtest.PostgresURL(t)
			conn, err := sql.Open("pgx", url)
			if err != nil {
				t.Fatal(err)
			}
			return []string{"--database-url", url}, conn, store.Config{DatabaseURL: url}
		}},
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			flags, conn, cfg := b.setUp(t)
			defer conn.Close()
			migrate := func(action string) (int, string) {
				t.Helper()
				var out bytes.Buffer
				code := runMigrate(ctx, append([]string{action}, flags...), &out, &out)
				return code, out.String()
			}
			known, _ := store.ReadSchemaStatus(ctx, cfg)

			code, out := migrate("status")
			if code != 0 || !strings.Contains(out, fmt.Sprintf("schema version 0 of %d; %d pending", known.Known, known.Known)) ||
				strings.Count(out, "  pending  ") != known.Known || !strings.Contains(out, "initial schema") ||
				strings.Contains(out, "unknown") {
				t.Fatalf("status of a new database: exit %d\n%s", code, out)
			}
			var tables int
			if err := conn.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations`).Scan(&tables); err == nil {
				t.Fatal("status made the migrations table")
			}

			code, out = migrate("up")
			if code != 0 || !strings.Contains(out, fmt.Sprintf("applied migration %d\n", known.Known)) ||
				!strings.Contains(out, fmt.Sprintf("schema version %[1]d of %[1]d, up to date", known.Known)) {
				t.Fatalf("up: exit %d\n%s", code, out)
			}
			if code, out = migrate("up"); code != 0 || !strings.Contains(out, "no migration pending") {
				t.Fatalf("second up: exit %d\n%s", code, out)
			}

			// A newer mailbus migrated the database.
			newer := known.Known + 1
			if _, err := conn.ExecContext(ctx, fmt.Sprintf(`INSERT INTO schema_migrations (version, applied_at) VALUES (%d, 0)`, newer)); err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("schema version %d, newer than this mailbus-store knows (%d)", newer, known.Known)
			if code, out = migrate("status"); code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "(unknown to this mailbus-store)") {
				t.Errorf("status of a newer database: exit %d, want 1 and %q\n%s", code, want, out)
			}
			if code, out = migrate("up"); code != 1 || strings.Contains(out, "applied") {
				t.Errorf("up on a newer database: exit %d, want 1\n%s", code, out)
			}
			s, err := store.New(store.Config{DataDir: cfg.DataDir, DatabaseURL: cfg.DatabaseURL, Dev: true,
				Listen: "127.0.0.1:0", MetricsListen: "-"})
			if err != nil {
				t.Fatal(err)
			}
			err = s.Run(ctx)
			wantErr := fmt.Sprintf("it is at schema version %d, this mailbus knows versions up to %d. A newer mailbus migrated it", newer, known.Known)
			if !errors.Is(err, store.ErrSchemaNewer) || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("store start on a newer database: %v, want ErrSchemaNewer saying %q", err, wantErr)
			}
		})
	}
}

// TestMigrateConcurrentPostgres runs "mailbus-store migrate up" from
// several replicas at once on a new PostgreSQL database: each succeeds, and
// every migration is applied once.
func TestMigrateConcurrentPostgres(t *testing.T) {
	url := dbtest.PostgresURL(t)
	const replicas = 8
	codes := make([]int, replicas)
	outs := make([]bytes.Buffer, replicas)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			codes[i] = runMigrate(context.Background(), []string{"up", "--database-url", url}, &outs[i], &outs[i])
		}()
	}
	close(start)
	wg.Wait()
	for i, code := range codes {
		if code != 0 {
			t.Errorf("replica %d: exit %d\n%s", i, code, outs[i].String())
		}
	}
	st, err := store.ReadSchemaStatus(context.Background(), store.Config{DatabaseURL: url})
	if err != nil || st.Version != st.Known {
		t.Fatalf("after concurrent up: %+v, %v", st, err)
	}
}

func TestMigrateUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args []string
		want int
	}{
		{args: nil, want: 2},
		{args: []string{"down"}, want: 2},
		{args: []string{"status", "extra"}, want: 2},
		{args: []string{"--data", dir, "status", "up"}, want: 2},
		{args: []string{"--data", dir}, want: 2},
		{args: []string{"--help"}, want: 0},
		// No database is made where there is none.
		{args: []string{"status", "--data", dir}, want: 1},
		{args: []string{"up", "--data", filepath.Join(dir, "missing")}, want: 1},
	} {
		var out bytes.Buffer
		if code := runMigrate(context.Background(), tt.args, &out, &out); code != tt.want {
			t.Errorf("migrate %q: exit %d, want %d\n%s", tt.args, code, tt.want, out.String())
		}
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) != 0 {
		t.Errorf("migrate made files where there was no database: %v %v", entries, err)
	}
}

// TestMigrateActionAnywhere: the action of "mailbus-store migrate" may
// come before, between or after the flags. The cases run in order on one
// database: status sees it new, up migrates it, and so on.
func TestMigrateActionAnywhere(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o700); err != nil { // t.TempDir is 0755: refused as a data directory
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, store.SQLiteFileName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{name: "action first", args: []string{"status", "--data", dir}, want: "pending"},
		{name: "action last", args: []string{"--data", dir, "up"}, want: "applied migration 1\n"},
		{name: "action last, flag=value", args: []string{"--data=" + dir, "status"}, want: "up to date"},
		{name: "action between flags", args: []string{"--log-level", "warn", "up", "--data", dir}, want: "no migration pending"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := runMigrate(context.Background(), tt.args, &out, &out); code != 0 || !strings.Contains(out.String(), tt.want) {
				t.Errorf("migrate %q: exit %d, want 0 and %q\n%s", tt.args, code, tt.want, out.String())
			}
		})
	}
}
