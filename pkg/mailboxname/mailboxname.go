// Package mailboxname holds the limits on mailbox names that the store
// enforces and the fetchers respect: a name's length in bytes and its
// nesting depth by the mailbox's hierarchy delimiter. The store refuses a
// device's mailbox beyond them; a fetcher skips an upstream folder beyond
// them rather than have the store refuse the account's whole folder list.
//
// CheckShape holds the rules on a device's name that servers do not apply
// alike (a trailing delimiter, an empty level, a ".." level): a server may
// refuse such a name, or create another one ("Trailing" for "Trailing/"),
// so the store refuses them from a device. A server's own names are taken
// as the server has them.
package mailboxname

import (
	"errors"
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

// CheckShape reports a name whose levels by the hierarchy delimiter delim
// are not all proper names, in words fit for an error message; nil when
// they are. It refuses a lone delimiter ("/"), a trailing one
// ("Trailing/"), an empty level ("a//b", "/a") and a "." or ".." level
// ("a/../b"). Without a delimiter the name is one level.
func CheckShape(name, delim string) error {
	if delim == "" {
		return checkLevel(name)
	}
	switch {
	case name == delim:
		return fmt.Errorf("is only the hierarchy delimiter %q", delim)
	case strings.HasSuffix(name, delim):
		return fmt.Errorf("ends with the hierarchy delimiter %q (a server creates the name without it, or refuses it)", delim)
	case strings.HasPrefix(name, delim):
		return fmt.Errorf("starts with the hierarchy delimiter %q (an empty first level)", delim)
	case strings.Contains(name, delim+delim):
		return fmt.Errorf("has an empty level (%q twice in a row)", delim)
	}
	for _, level := range strings.Split(name, delim) {
		if err := checkLevel(level); err != nil {
			return err
		}
	}
	return nil
}

var errDotLevel = errors.New(`has a "." or ".." level (a path, not a mailbox name)`)

func checkLevel(level string) error {
	if level == "." || level == ".." {
		return errDotLevel
	}
	return nil
}
