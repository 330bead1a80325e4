//go:build unix

package mailbus

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockDataDir takes an exclusive lock on the data directory, so that a
// second mailbus on the same directory fails at once instead of sharing
// the SQLite database and the embedded NATS server's files. The lock goes
// with the process.
func lockDataDir(dir string) (release func(), err error) {
	path := filepath.Join(dir, LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b, _ := os.ReadFile(path)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			holder := strings.TrimSpace(string(b))
			if _, perr := strconv.Atoi(holder); perr == nil {
				return nil, fmt.Errorf("the data directory %s is in use by another mailbus (pid %s); stop it, or give another --data", dir, holder)
			}
			return nil, fmt.Errorf("the data directory %s is in use by another mailbus; stop it, or give another --data", dir)
		}
		return nil, fmt.Errorf("lock the data directory: %w", err)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
