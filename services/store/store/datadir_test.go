package store_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/datadir"
	"github.com/mailbus/mailbus/pkg/secretbox"
	"github.com/mailbus/mailbus/services/store/internal/db"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
	"github.com/mailbus/mailbus/services/store/store"
)

// TestDataDirFilesArePrivate: a store on SQLite creates its data
// directory 0700 and every file in it 0600: the database, its -wal and
// -shm files (SQLite would make them 0644), a body kept as a file and the
// admin token.
func TestDataDirFilesArePrivate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	e := startStore(t, dbtest.Backend{}, storeOpts{
		dbConfig:       &db.Config{DataDir: data},
		adminTokenFile: filepath.Join(data, store.AdminTokenFileName),
	})
	acct := e.createAccount(t, pop3Account("private"))
	large := append(testMessage(1), bytes.Repeat([]byte("x"), db.DefaultBlobFileMin+1)...)
	e.mustIngest(t, pop3Item(acct.Id, "u1", large))

	seen := map[string]bool{}
	err := filepath.WalkDir(data, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := datadir.FileMode
		if d.IsDir() {
			want = datadir.DirMode
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), want)
		}
		if d.Type().IsRegular() {
			seen[strings.TrimPrefix(path, data+"/")] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mailbus.db", "mailbus.db-wal", "mailbus.db-shm", store.AdminTokenFileName} {
		if !seen[name] {
			t.Errorf("no %s in the data directory (found %v)", name, seen)
		}
	}
	if !hasPrefix(seen, "blobs/") {
		t.Errorf("no body file under blobs/ (found %v)", seen)
	}
}

func hasPrefix(names map[string]bool, prefix string) bool {
	for n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// TestDataDirOpenToOthersIsRefused: a data directory that other users can
// enter (a pre-created 0755 one) stops the store before the database is
// created, with the chmod command that fixes it; after that command the
// store starts.
func TestDataDirOpenToOthersIsRefused(t *testing.T) {
	for _, mode := range []fs.FileMode{0o755, 0o701, 0o777} {
		t.Run(mode.String(), func(t *testing.T) {
			data := t.TempDir()
			if err := os.Chmod(data, mode); err != nil {
				t.Fatal(err)
			}
			key, err := secretbox.GenerateKey()
			if err != nil {
				t.Fatal(err)
			}
			s, err := store.New(store.Config{DataDir: data, Listen: "127.0.0.1:0", MetricsListen: "-", SecretKey: key})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLong)
			defer cancel()
			err = s.Run(ctx)
			if !errors.Is(err, datadir.ErrOpenToOthers) || !strings.Contains(err.Error(), "chmod 700 "+data) {
				t.Fatalf("store on a %v data directory: %v; want ErrOpenToOthers with the chmod command", mode, err)
			}
			if _, err := os.Stat(filepath.Join(data, "mailbus.db")); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("database created in the refused directory: %v", err)
			}
		})
	}
}

// TestDatabaseOfAnOlderVersionIsNarrowed: database files an older version
// left 0644 in a private directory are narrowed to 0600 at open.
func TestDatabaseOfAnOlderVersionIsNarrowed(t *testing.T) {
	cfg := db.Config{DataDir: t.TempDir(), Secrets: dbtest.Secrets(t)}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"mailbus.db", "mailbus.db-wal", "mailbus.db-shm"} {
		if err := os.WriteFile(filepath.Join(cfg.DataDir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(filepath.Join(cfg.DataDir, name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	d, err := db.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, name := range []string{"mailbus.db", "mailbus.db-wal", "mailbus.db-shm"} {
		fi, err := os.Stat(filepath.Join(cfg.DataDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %04o after open, want 0600", name, fi.Mode().Perm())
		}
	}
}
