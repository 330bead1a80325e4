//go:build unix && !linux

package dovecottest

import "syscall"

// sysProcAttr puts the master in its own process group so Close can signal
// every Dovecot process at once.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// liveGroupMembers reports whether group pgid has members; without /proc it
// cannot list them (pid -1 stands for "some") nor tell zombies apart.
func liveGroupMembers(pgid int) []int {
	if syscall.Kill(-pgid, 0) == nil {
		return []int{-1}
	}
	return nil
}
