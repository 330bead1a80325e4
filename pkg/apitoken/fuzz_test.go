package apitoken

import (
	"strings"
	"testing"
	"unicode"
)

// FuzzCheck: Check and Resolve never panic, never echo the token in an
// error (tokens are secrets), and agree with each other; a generated token
// always passes.
//
// "Never echo" is checked as: the error text is the same for every token of
// the same shape. mask keeps what Check and Resolve may look at (the prefix,
// white space) and replaces every other character, once by 'x' and once by
// 'y'; an error that quoted any of the token's content would differ between
// the two. (A plain strings.Contains(err, tok) fails on tokens such as
// "not a", which the fixed message happens to contain; CI found that.)
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"mbt_0123456789abcdef_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U", "", "mbt_", "Bearer mbt_x",
		"mbt_0123456789abcdef_sec ret", " mbt_x \n", "MBT_0123456789ABCDEF_x", "mbt_\x00\xff", "not a",
	} {
		f.Add(s)
	}
	errText := func(err error) string {
		if err == nil {
			return ""
		}
		return err.Error()
	}
	none := func(string) (string, bool) { return "", false }
	f.Fuzz(func(t *testing.T, tok string) {
		err := Check(tok)
		if err == nil && (!strings.HasPrefix(tok, Prefix) || strings.ContainsAny(tok, " \t\r\n")) {
			t.Fatalf("Check accepted %q", tok)
		}
		if x, y := errText(Check(mask(tok, 'x'))), errText(Check(mask(tok, 'y'))); x != y || x != errText(err) {
			t.Fatalf("Check error depends on the token's content: %q, masked %q and %q", errText(err), x, y)
		}
		got, rerr := Resolve(tok, "", none)
		trimmed := strings.TrimSpace(tok)
		switch {
		case trimmed == "" && (got != "" || rerr != nil):
			t.Fatalf("Resolve(%q) = %q, %v; want nothing", tok, got, rerr)
		case trimmed != "" && (rerr == nil) != (Check(trimmed) == nil):
			t.Fatalf("Resolve(%q) err %v disagrees with Check", tok, rerr)
		case rerr == nil && got != trimmed:
			t.Fatalf("Resolve(%q) = %q", tok, got)
		}
		_, xerr := Resolve(mask(tok, 'x'), "", none)
		_, yerr := Resolve(mask(tok, 'y'), "", none)
		if errText(xerr) != errText(yerr) || errText(xerr) != errText(rerr) {
			t.Fatalf("Resolve error depends on the token's content: %q, masked %q and %q", errText(rerr), errText(xerr), errText(yerr))
		}
		gen, id, err := Generate()
		if err != nil || Check(gen) != nil || len(id) != IDLen || !strings.HasPrefix(gen, Prefix+id+"_") {
			t.Fatalf("Generate() = %q, %q, %v", gen, id, err)
		}
	})
}

// mask returns tok with its "mbt_" prefix (wherever the trimmed token starts)
// and its white space kept and every other character replaced by c.
func mask(tok string, c rune) string {
	var b strings.Builder
	lead := len(tok) - len(strings.TrimLeftFunc(tok, unicode.IsSpace))
	keepFrom, keepTo := -1, -1
	if strings.HasPrefix(tok[lead:], Prefix) {
		keepFrom, keepTo = lead, lead+len(Prefix)
	}
	for i, r := range tok {
		switch {
		case i >= keepFrom && i < keepTo:
			b.WriteRune(r)
		case unicode.IsSpace(r):
			b.WriteRune(r)
		default:
			b.WriteRune(c)
		}
	}
	return b.String()
}

func TestMaskKeepsShape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"not a", "xxx x"},
		{" mbt_ab\tc\n", " mbt_xx\tx\n"},
		{"Bearer mbt_x", "xxxxxx xxxxx"},
		{"mbt_\x00\xff", "mbt_xx"},
	} {
		if got := mask(tc.in, 'x'); got != tc.want {
			t.Errorf("mask(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
