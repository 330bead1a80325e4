package apitoken

import (
	"strings"
	"testing"
)

// FuzzCheck: Check and Resolve never panic, never echo the token in an
// error (tokens are secrets), and agree with each other; a generated token
// always passes.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"mbt_0123456789abcdef_c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U", "", "mbt_", "Bearer mbt_x",
		"mbt_0123456789abcdef_sec ret", " mbt_x \n", "MBT_0123456789ABCDEF_x", "mbt_\x00\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		err := Check(tok)
		if err == nil && (!strings.HasPrefix(tok, Prefix) || strings.ContainsAny(tok, " \t\r\n")) {
			t.Fatalf("Check accepted %q", tok)
		}
		if err != nil && len(tok) > len(Prefix) && strings.Contains(err.Error(), tok) {
			t.Fatalf("Check error %q reveals the token", err)
		}
		got, rerr := Resolve(tok, "", func(string) (string, bool) { return "", false })
		trimmed := strings.TrimSpace(tok)
		switch {
		case trimmed == "" && (got != "" || rerr != nil):
			t.Fatalf("Resolve(%q) = %q, %v; want nothing", tok, got, rerr)
		case trimmed != "" && (rerr == nil) != (Check(trimmed) == nil):
			t.Fatalf("Resolve(%q) err %v disagrees with Check", tok, rerr)
		case rerr == nil && got != trimmed:
			t.Fatalf("Resolve(%q) = %q", tok, got)
		case rerr != nil && len(trimmed) > len(Prefix) && strings.Contains(rerr.Error(), trimmed):
			t.Fatalf("Resolve error %q reveals the token", rerr)
		}
		gen, id, err := Generate()
		if err != nil || Check(gen) != nil || len(id) != IDLen || !strings.HasPrefix(gen, Prefix+id+"_") {
			t.Fatalf("Generate() = %q, %q, %v", gen, id, err)
		}
	})
}
