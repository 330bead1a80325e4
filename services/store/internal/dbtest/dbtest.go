// Package dbtest opens fresh store databases for tests, on both backends:
// SQLite in a temporary directory, and PostgreSQL in a new database of its
// own on the server named by MAILBUS_TEST_POSTGRES (default
// postgres://postgres@127.0.0.1:5432/test), dropped when the test ends.
//
// Without a reachable PostgreSQL the PostgreSQL cases skip, saying what to
// start, except under CI=true, where they fail.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"

	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// Backend is one database backend to run a test against.
type Backend struct {
	Name string
	// Config returns a db.Config (and the URL, for PostgreSQL) for a fresh,
	// empty database owned by t.
	Config func(t testing.TB) db.Config
}

// Backends returns SQLite and PostgreSQL.
func Backends() []Backend {
	return []Backend{
		{Name: "sqlite", Config: func(t testing.TB) db.Config {
			return db.Config{DataDir: filepath.Join(t.TempDir(), "data"), Secrets: Secrets(t)}
		}},
		{Name: "postgres", Config: func(t testing.TB) db.Config {
			return db.Config{URL: PostgresURL(t), Secrets: Secrets(t)}
		}},
	}
}

// Open opens a fresh database of the backend, closed when t ends.
func (b Backend) Open(t testing.TB) *db.DB {
	t.Helper()
	d, err := db.Open(context.Background(), b.Config(t))
	if err != nil {
		t.Fatalf("open %s: %v", b.Name, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// Secrets returns a box with a random key.
func Secrets(t testing.TB) *secretbox.Box {
	k, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := secretbox.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// AdminURL is the PostgreSQL server tests create their databases on.
func AdminURL() string {
	if u := os.Getenv("MAILBUS_TEST_POSTGRES"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// PostgresURL creates a new database and returns its URL; it is dropped
// when t ends.
func PostgresURL(t testing.TB) string {
	t.Helper()
	admin, err := sql.Open("pgx", AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := admin.PingContext(ctx); err != nil {
		admin.Close()
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL at %s is unreachable: %v", AdminURL(), err)
		}
		t.Skipf("PostgreSQL unreachable (%v): start it or set MAILBUS_TEST_POSTGRES", err)
	}
	var b [6]byte
	rand.Read(b[:])
	name := "mailbus_test_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close()
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		admin.ExecContext(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		admin.Close()
	})
	u, err := url.Parse(AdminURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}
