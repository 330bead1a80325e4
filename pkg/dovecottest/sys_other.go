//go:build !unix

package dovecottest

import (
	"errors"
	"syscall"
)

const supported = false

var errUnsupported = errors.New("dovecottest: only supported on unix")

func sysProcAttr() *syscall.SysProcAttr { return nil }

func killGroup(int, syscall.Signal) error { return errUnsupported }

func liveGroupMembers(int) []int { return nil }

func checkSearchable(string, int, int) error { return errUnsupported }
