// Package privatefile reads files that hold secrets (API tokens,
// encryption keys) and refuses one whose mode lets other users read or
// change it: a secret in such a file is no secret any more, and starting
// anyway would hide that.
//
// A file is private when its mode grants nothing to its group or to
// others: 0600, 0400 or narrower. The check is made on the opened file,
// so the file that is read is the file that was checked. On Windows, where
// Unix modes do not describe who may read a file, nothing is checked.
package privatefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
)

// ErrNotPrivate is wrapped by the error of a file that other users may
// read or change.
var ErrNotPrivate = errors.New("other users may read or change it")

// maxSize bounds what Read reads: token and key files are a line long.
const maxSize = 64 << 10

// Check reports an error wrapping ErrNotPrivate when a file's mode grants
// its group or others any access, with the command that fixes it.
func Check(path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	if perm := mode.Perm(); perm&0o077 != 0 {
		return fmt.Errorf("%s has mode %04o: %w; it holds a secret, so make it private: chmod 600 %s", path, perm, ErrNotPrivate, path)
	}
	return nil
}

// Read returns the content of a private file (at most 64 KiB); a file
// that is not private (Check) is refused without being read.
func Read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := Check(path, fi.Mode()); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxSize {
		return nil, fmt.Errorf("%s is larger than %d bytes: not a token or key file", path, maxSize)
	}
	return b, nil
}
