//go:build !linux

package cli

// overwriteArg cannot change the process title on this platform (the
// arguments may be a copy of what ps reads).
func overwriteArg(string) bool { return false }
