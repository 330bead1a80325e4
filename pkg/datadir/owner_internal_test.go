//go:build unix

package datadir

import (
	"errors"
	"io/fs"
	"strings"
	"syscall"
	"testing"
	"time"
)

// ownedInfo is a directory's FileInfo with an owner.
type ownedInfo struct{ uid uint32 }

func (o ownedInfo) Name() string       { return "data" }
func (o ownedInfo) Size() int64        { return 0 }
func (o ownedInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o700 }
func (o ownedInfo) ModTime() time.Time { return time.Time{} }
func (o ownedInfo) IsDir() bool        { return true }
func (o ownedInfo) Sys() any           { return &syscall.Stat_t{Uid: o.uid} }

func TestCheckOwner(t *testing.T) {
	for _, tc := range []struct {
		name        string
		owner, euid int
		refused     bool
	}{
		{"own directory", 1000, 1000, false},
		{"root's, as a user (a Kubernetes fsGroup volume)", 0, 1000, false},
		{"root's, as root", 0, 0, false},
		{"another user's", 1001, 1000, true},
		{"a user's, as root", 1000, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkOwner("/tmp/my data", ownedInfo{uint32(tc.owner)}, tc.euid)
			if got := errors.Is(err, ErrNotOwned); got != tc.refused {
				t.Fatalf("err %v, want refused %v", err, tc.refused)
			}
			if tc.refused && !strings.Contains(err.Error(), "chown ") {
				t.Errorf("%v: no chown command", err)
			}
		})
	}
}
