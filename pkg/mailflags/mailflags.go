// Package mailflags normalises IMAP message flags and keywords (RFC 9051
// section 2.3.2) so that the store, the fetchers and devices agree on one
// spelling: system flags in their canonical case ("\Seen"), keywords as
// given (they are case-insensitive on the server, so the first spelling
// seen wins within one set), sets sorted and without duplicates.
package mailflags

import (
	"fmt"
	"slices"
	"strings"
)

// System flags.
const (
	Seen     = `\Seen`
	Answered = `\Answered`
	Flagged  = `\Flagged`
	Deleted  = `\Deleted`
	Draft    = `\Draft`
)

var system = map[string]string{
	`\seen`:     Seen,
	`\answered`: Answered,
	`\flagged`:  Flagged,
	`\deleted`:  Deleted,
	`\draft`:    Draft,
}

// MaxLen is the longest flag accepted.
const MaxLen = 128

// Canonical returns the canonical spelling of one flag, or an error saying
// why it is not a valid flag. \Recent is refused: no client may set it.
func Canonical(f string) (string, error) {
	if f == "" {
		return "", fmt.Errorf("empty flag")
	}
	if len(f) > MaxLen {
		return "", fmt.Errorf("flag longer than %d bytes", MaxLen)
	}
	if strings.HasPrefix(f, `\`) {
		if c, ok := system[strings.ToLower(f)]; ok {
			return c, nil
		}
		return "", fmt.Errorf("unknown system flag %q", f)
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return "", fmt.Errorf("flag %q has a character not allowed in an IMAP keyword", f)
		}
	}
	return f, nil
}

// Normalize returns the canonical, sorted, de-duplicated set of flags, or
// the first invalid flag's error.
func Normalize(flags []string) ([]string, error) {
	out := make([]string, 0, len(flags))
	seen := make(map[string]bool, len(flags))
	for _, f := range flags {
		c, err := Canonical(f)
		if err != nil {
			return nil, err
		}
		k := strings.ToLower(c)
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, c)
	}
	slices.Sort(out)
	return out, nil
}

// Join encodes a normalised set for storage: space-separated.
func Join(flags []string) string { return strings.Join(flags, " ") }

// Split decodes a stored set.
func Split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, " ")
}

// Contains reports whether the set has the flag (case-insensitively).
func Contains(flags []string, f string) bool {
	for _, x := range flags {
		if strings.EqualFold(x, f) {
			return true
		}
	}
	return false
}

// Apply adds and removes flags on a set and returns the new set with what
// really changed. Inputs must be normalised.
func Apply(set, add, remove []string) (result, added, removed []string) {
	result = slices.Clone(set)
	for _, f := range remove {
		if i := indexFold(result, f); i >= 0 {
			result = slices.Delete(result, i, i+1)
			removed = append(removed, f)
		}
	}
	for _, f := range add {
		if indexFold(result, f) < 0 {
			result = append(result, f)
			added = append(added, f)
		}
	}
	slices.Sort(result)
	return result, added, removed
}

// Diff returns the flags of to missing from from (added) and of from missing
// from to (removed).
func Diff(from, to []string) (added, removed []string) {
	for _, f := range to {
		if indexFold(from, f) < 0 {
			added = append(added, f)
		}
	}
	for _, f := range from {
		if indexFold(to, f) < 0 {
			removed = append(removed, f)
		}
	}
	return added, removed
}

func indexFold(set []string, f string) int {
	for i, x := range set {
		if strings.EqualFold(x, f) {
			return i
		}
	}
	return -1
}
