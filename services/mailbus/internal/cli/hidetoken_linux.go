package cli

import "unsafe"

// overwriteArg overwrites the bytes of s, a string of os.Args, with '*'.
// On Linux the Go runtime does not copy the arguments: os.Args points
// into the argv area of the process's stack, which is what
// /proc/<pid>/cmdline (and so ps) reads. Only strings of os.Args may be
// given: other strings may be in read-only memory.
func overwriteArg(s string) bool {
	if len(s) == 0 {
		return true
	}
	b := unsafe.Slice(unsafe.StringData(s), len(s))
	for i := range b {
		b[i] = '*'
	}
	return true
}
