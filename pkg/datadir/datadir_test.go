package datadir_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/mailbus/mailbus/pkg/datadir"
)

func TestCheckDir(t *testing.T) {
	for _, tc := range []struct {
		mode    fs.FileMode
		refused bool
	}{
		{0o700, false},
		{0o750, false}, // a Kubernetes fsGroup volume
		{0o770, false},
		{0o701, true},
		{0o704, true},
		{0o755, true},
		{0o777, true},
	} {
		err := datadir.CheckDir("/var/lib/my data", tc.mode)
		if got := errors.Is(err, datadir.ErrOpenToOthers); got != tc.refused {
			t.Errorf("mode %04o: err %v, want refused %v", tc.mode, err, tc.refused)
		}
		if tc.refused && !strings.Contains(err.Error(), "chmod 700 '/var/lib/my data'") {
			t.Errorf("mode %04o: %v: no chmod command", tc.mode, err)
		}
	}
}

// TestModesWhateverTheUmask: Ensure and PrivateFile create 0700 and 0600
// under a permissive umask, and PrivateFile narrows an existing file.
func TestModesWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "a", "data")
	if err := datadir.Ensure(dir); err != nil {
		t.Fatal(err)
	}
	wantMode(t, dir, 0o700)
	if err := datadir.Ensure(dir); err != nil {
		t.Fatalf("Ensure on its own directory: %v", err)
	}
	file := filepath.Join(dir, "mailbus.db")
	if err := datadir.PrivateFile(file); err != nil {
		t.Fatal(err)
	}
	wantMode(t, file, 0o600)
	wide := filepath.Join(dir, "old")
	if err := os.WriteFile(wide, []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := datadir.PrivateFile(wide); err != nil {
		t.Fatal(err)
	}
	wantMode(t, wide, 0o600)
	if b, err := os.ReadFile(wide); err != nil || string(b) != "kept" {
		t.Fatalf("content after PrivateFile: %q %v", b, err)
	}
	if err := datadir.NarrowIfExists(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("NarrowIfExists on a missing file: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := datadir.Ensure(dir); !errors.Is(err, datadir.ErrOpenToOthers) {
		t.Fatalf("Ensure on a 0755 directory: %v", err)
	}
}

func wantMode(t *testing.T, path string, want fs.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != want {
		t.Fatalf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), want)
	}
}

// TestEnsureRefusesAnotherUsersDirectory: a data directory another user
// made (say in /tmp, before the service first ran) is refused although its
// mode is 0700: its owner could replace the database, keys and tokens.
// Making such a directory takes root; the rule itself is TestCheckOwner.
func TestEnsureRefusesAnotherUsersDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a directory to another user takes root; TestCheckOwner covers the rule")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := datadir.Ensure(dir); !errors.Is(err, datadir.ErrNotOwned) {
		t.Fatalf("Ensure on a 0700 directory of uid 65534: %v, want ErrNotOwned", err)
	}
	// A symbolic link to it is no way round.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if err := datadir.Ensure(link); !errors.Is(err, datadir.ErrNotOwned) {
		t.Fatalf("Ensure on a link to it: %v, want ErrNotOwned", err)
	}
}
