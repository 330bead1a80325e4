//go:build unix

package dovecottest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

const supported = true

// killGroup sends sig to every process in the process group pgid. A group
// that no longer exists is not an error.
func killGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return fmt.Errorf("dovecottest: refusing to signal process group %d", pgid)
	}
	err := syscall.Kill(-pgid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

// checkSearchable returns an error unless uid/gid may traverse (search)
// every directory from / down to dir: a mail process running as uid must
// reach its Maildir below dir.
func checkSearchable(dir string, uid, gid int) error {
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("dovecottest: %w", err)
		}
		if !searchable(fi, uid, gid) {
			return fmt.Errorf("dovecottest: %s (mode %v) is not searchable by the mail user uid %d gid %d; "+
				"use a directory whose parents are world-searchable (pass dir \"\" for a fresh one under %s)",
				p, fi.Mode().Perm(), uid, gid, os.TempDir())
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func searchable(fi fs.FileInfo, uid, gid int) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	perm := fi.Mode().Perm()
	switch {
	case uid == 0:
		return true
	case int(st.Uid) == uid:
		return perm&0o100 != 0
	case int(st.Gid) == gid:
		return perm&0o010 != 0
	default:
		return perm&0o001 != 0
	}
}
