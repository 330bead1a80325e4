package mailflags

import (
	"slices"
	"strings"
	"testing"
)

// validAtom reports whether f is a system flag or an IMAP keyword atom
// (RFC 9051: no controls, space, 8-bit or atom-specials).
func validAtom(f string) bool {
	if f == "" || len(f) > MaxLen {
		return false
	}
	if strings.HasPrefix(f, `\`) {
		return slices.Contains([]string{Seen, Answered, Flagged, Deleted, Draft}, f)
	}
	for i := 0; i < len(f); i++ {
		if c := f[i]; c <= 0x20 || c >= 0x7f || strings.IndexByte(`(){%*"\]`, c) >= 0 {
			return false
		}
	}
	return true
}

// FuzzCanonical: an accepted flag comes out as a valid atom equal to the
// input up to case, canonicalising is idempotent, and \Recent is refused.
func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`\Seen`, `\sEEN`, `\Recent`, `\Bogus`, `$Forwarded`, "a b", `x]`, "é", "", strings.Repeat("k", MaxLen+1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		c, err := Canonical(in)
		if err != nil {
			if c != "" {
				t.Fatalf("Canonical(%q) returned %q with error %v", in, c, err)
			}
			return
		}
		if !validAtom(c) || !strings.EqualFold(c, in) || strings.EqualFold(c, `\Recent`) {
			t.Fatalf("Canonical(%q) = %q: not a valid flag for this input", in, c)
		}
		if again, err := Canonical(c); err != nil || again != c {
			t.Fatalf("Canonical not idempotent: %q -> %q -> %q, %v", in, c, again, err)
		}
	})
}

// FuzzNormalizeApply: a normalised set is sorted, valid and free of
// case-insensitive duplicates, and normalising it again changes nothing;
// Apply of normalised, disjoint add and remove sets gives a normalised set whose reported changes
// agree with Diff.
func FuzzNormalizeApply(f *testing.F) {
	f.Add(`\Seen $Junk`, `\seen \Flagged`, `$junk`)
	f.Add(`a A a`, `b`, `A`)
	f.Add(`\Recent`, ``, ``)
	f.Add(`x(y`, `\Draft`, `\Draft`)
	f.Fuzz(func(t *testing.T, set, add, remove string) {
		n, err := Normalize(strings.Fields(set))
		if err != nil {
			return
		}
		checkSet(t, n)
		if again, err := Normalize(n); err != nil || !slices.Equal(again, n) {
			t.Fatalf("Normalize not idempotent: %q -> %q (%v)", n, again, err)
		}
		if got := Split(Join(n)); !slices.Equal(got, n) && len(n) > 0 {
			t.Fatalf("Split(Join(%q)) = %q", n, got)
		}
		a, errA := Normalize(strings.Fields(add))
		r, errR := Normalize(strings.Fields(remove))
		if errA != nil || errR != nil || slices.ContainsFunc(a, func(x string) bool { return Contains(r, x) }) {
			return // the store refuses a flag both added and removed
		}
		res, added, removed := Apply(n, a, r)
		checkSet(t, res)
		da, dr := Diff(n, res)
		if !sameFold(da, added) || !sameFold(dr, removed) {
			t.Fatalf("Apply(%q, +%q, -%q) = %q reports +%q -%q, Diff says +%q -%q", n, a, r, res, added, removed, da, dr)
		}
		for _, x := range a {
			if !Contains(res, x) && !Contains(r, x) && !Contains(n, x) {
				t.Fatalf("Apply lost added flag %q", x)
			}
		}
	})
}

func checkSet(t *testing.T, s []string) {
	t.Helper()
	for i, x := range s {
		if !validAtom(x) {
			t.Fatalf("set %q has invalid flag %q", s, x)
		}
		if i > 0 && (s[i-1] >= x || strings.EqualFold(s[i-1], x)) {
			t.Fatalf("set %q not sorted or has duplicates", s)
		}
	}
}

func sameFold(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !Contains(b, x) {
			return false
		}
	}
	return true
}
