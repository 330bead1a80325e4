// Package datadir keeps a service's data directory and the files in it
// private to the user the service runs as.
//
// A data directory holds the SQLite database (accounts, API token hashes,
// sealed passwords, mail), the credentials key and token files. It is
// created with mode 0700 and its files with 0600, whatever the umask; an
// existing directory that other users can read, write or enter is refused
// with the chmod command that fixes it. The group bits are not checked:
// Kubernetes gives a volume to the pod's fsGroup (mode 2770), and
// the files in it are 0600 anyway.
package datadir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// ErrOpenToOthers is returned for a data directory that users other than
// its owner and group may read, write or enter.
var ErrOpenToOthers = errors.New("other users can read or write it")

// DirMode and FileMode are the modes Ensure and PrivateFile create with.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// Ensure creates the data directory path (and missing parents) with mode
// 0700, or checks that an existing one is closed to other users: it
// returns an error wrapping ErrOpenToOthers, with the chmod command, when
// its "others" bits are set, and one wrapping ErrNotOwned when it belongs
// to another user than the one running (root aside). The checks are made
// on the directory as it is after creating it too, so that one another
// user put there meanwhile (or a symbolic link to one) is refused.
func Ensure(path string) error {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(path, DirMode); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		// MkdirAll's mode is narrowed by the umask, never widened; a umask
		// such as 0077 gives 0700 anyway, a strange one such as 0277 would
		// leave the directory unwritable to us.
		if err := os.Chmod(path, DirMode); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
	}
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("data directory: %w", err)
	case !fi.IsDir():
		return fmt.Errorf("data directory %s: not a directory", path)
	}
	if err := checkOwner(path, fi, os.Geteuid()); err != nil {
		return err
	}
	return CheckDir(path, fi.Mode())
}

// ErrNotOwned is returned for a data directory that belongs to another
// user than the one the service runs as (and not to root): its owner can
// replace the database, keys and tokens in it whatever their modes.
var ErrNotOwned = errors.New("it belongs to another user")

// checkOwner returns an error wrapping ErrNotOwned when the directory fi
// belongs neither to euid nor to root (a volume Kubernetes mounts for an
// fsGroup belongs to root). Root is held to it too: a service run as root
// on a directory a user made would hand that user the service. Where the
// owner is not known (Windows) nothing is checked.
func checkOwner(path string, fi fs.FileInfo, euid int) error {
	owner, ok := ownerOf(fi)
	if !ok || owner == 0 || owner == euid {
		return nil
	}
	return fmt.Errorf("data directory %s: %w (uid %d), not to the user running this (uid %d), who could then have their database, keys and tokens replaced; use a directory of your own, or fix it with: chown %d %s",
		path, ErrNotOwned, owner, euid, euid, shellQuote(path))
}

// CheckDir returns an error wrapping ErrOpenToOthers when mode lets users
// other than the owner and group of the directory path in.
func CheckDir(path string, mode fs.FileMode) error {
	if mode.Perm()&0o007 == 0 {
		return nil
	}
	return fmt.Errorf("data directory %s has mode %04o: %w (it holds the database, keys and tokens); fix it with: chmod 700 %s",
		path, mode.Perm(), ErrOpenToOthers, shellQuote(path))
}

// PrivateFile makes sure the file path exists with mode 0600: a new one
// is created empty with that mode, whatever the umask; an existing one
// with a wider mode (a database made by an older version, with the
// umask's 0644) is narrowed to 0600. SQLite gives its -wal and -shm files
// the mode of the database file, so calling it for the database before
// opening it keeps those private too.
func PrivateFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return fmt.Errorf("private file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("private file %s: %w", path, err)
	}
	if fi.Mode().Perm() != FileMode {
		if err := f.Chmod(FileMode); err != nil {
			return fmt.Errorf("private file %s: %w", path, err)
		}
	}
	return f.Close()
}

// NarrowIfExists narrows an existing file to mode 0600 (a -wal or -shm
// file an older version left with 0644); a missing one is no error.
func NarrowIfExists(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("private file: %w", err)
	}
	if fi.Mode().Perm() == FileMode {
		return nil
	}
	if err := os.Chmod(path, FileMode); err != nil {
		return fmt.Errorf("private file: %w", err)
	}
	return nil
}

// shellQuote quotes a path for the chmod command in a message when it
// holds characters a shell would split or expand.
func shellQuote(s string) string {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '/' || r == '.' || r == '-' || r == '_') {
			return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
		}
	}
	return s
}
