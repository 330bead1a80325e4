// Package mailboxname holds the limits on mailbox names that the store
// enforces and the fetchers respect: a name's length in bytes and its
// nesting depth by the mailbox's hierarchy delimiter. The store refuses a
// device's mailbox beyond them; a fetcher skips an upstream folder beyond
// them rather than have the store refuse the account's whole folder list.
package mailboxname

import (
	"fmt"
	"strings"
)

// MaxLen is the longest mailbox name, in bytes.
const MaxLen = 1000

// MaxDepth is the most levels a mailbox name may have: "a/b/c" has three
// by the delimiter "/". A name without a delimiter has one.
const MaxDepth = 32

// Depth is the number of levels of name by the hierarchy delimiter delim:
// one more than the number of delimiters in it, or 1 without a delimiter.
func Depth(name, delim string) int {
	if delim == "" {
		return 1
	}
	return strings.Count(name, delim) + 1
}

// CheckLimits reports a name longer than MaxLen or nested deeper than
// MaxDepth by delim, in words fit for an error message; nil when within
// both. It does not check the characters of the name.
func CheckLimits(name, delim string) error {
	if len(name) > MaxLen {
		return fmt.Errorf("longer than %d bytes", MaxLen)
	}
	if d := Depth(name, delim); d > MaxDepth {
		return fmt.Errorf("nested %d levels deep by %q, more than %d", d, delim, MaxDepth)
	}
	return nil
}
