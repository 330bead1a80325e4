package imapsync

import (
	"slices"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/mailflags"
)

// matchBacktrack is the plain recursive definition of a LIST pattern,
// kept as the reference matchPattern must agree with (it is exponential
// in the number of wildcards, so it only runs on short inputs).
func matchBacktrack(pattern, name, delim string) bool {
	if pattern == "" {
		return name == ""
	}
	switch pattern[0] {
	case '*':
		for i := 0; i <= len(name); i++ {
			if matchBacktrack(pattern[1:], name[i:], delim) {
				return true
			}
		}
		return false
	case '%':
		for i := 0; i <= len(name); i++ {
			if matchBacktrack(pattern[1:], name[i:], delim) {
				return true
			}
			if delim != "" && strings.HasPrefix(name[i:], delim) {
				return false
			}
		}
		return false
	}
	return name != "" && name[0] == pattern[0] && matchBacktrack(pattern[1:], name[1:], delim)
}

// FuzzMatchPattern checks the folder include/exclude matcher against the
// recursive definition, and the invariants that hold for any input: a
// pattern without wildcards matches only itself, "*" matches everything,
// INBOX matches any spelling of INBOX.
func FuzzMatchPattern(f *testing.F) {
	for _, c := range [][3]string{
		{"*", "Archive/2024", "/"}, {"%", "Archive/2024", "/"}, {"Archive/%", "Archive/2024", "/"},
		{"INBOX", "inbox", "/"}, {"Lists.*", "Lists.go.dev", "."}, {"%%", "a/b", ""},
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 60), "/"}, {"%/%/%", "a//b", "/"},
		{"a%b", "a::b", "::"}, {"", "", ""}, {"*\xff", "\xff\xfe", "\xff"},
	} {
		f.Add(c[0], c[1], c[2])
	}
	f.Fuzz(func(t *testing.T, pattern, name, delim string) {
		got := matchPattern(pattern, name, delim)
		if strings.EqualFold(pattern, "INBOX") && strings.EqualFold(name, "INBOX") {
			if !got {
				t.Fatalf("INBOX pattern %q does not match %q", pattern, name)
			}
			return
		}
		if wildcards := strings.Count(pattern, "*") + strings.Count(pattern, "%"); wildcards <= 4 && len(name) <= 16 {
			if want := matchBacktrack(pattern, name, delim); got != want {
				t.Fatalf("matchPattern(%q, %q, %q) = %v, reference says %v", pattern, name, delim, got, want)
			}
		}
		if !strings.ContainsAny(pattern, "*%") && got != (pattern == name) {
			t.Fatalf("literal pattern %q vs %q: %v", pattern, name, got)
		}
		if !matchPattern("*", name, delim) || !matchPattern(pattern+"*", name+pattern, delim) && got {
			t.Fatalf("wildcard invariants fail for %q, %q, %q", pattern, name, delim)
		}
	})
}

// FuzzNormFlags checks the flags imapsync keeps from a server's FETCH
// FLAGS: each is a valid, canonical flag (never \Recent), the set is
// sorted and free of case-insensitive duplicates, normalising again changes
// nothing, and sameFlags is reflexive and symmetric.
func FuzzNormFlags(f *testing.F) {
	for _, s := range []string{
		`\Seen \Answered`, `\seen \SEEN $Forwarded $forwarded`, `\Recent \Deleted`,
		`\Unknown x`, "bad(flag ok", `"quoted"`, "\x00 \x7f é", `\* $MDNSent`,
		strings.Repeat("k", 200) + " short",
	} {
		f.Add(s, `\Seen`)
	}
	f.Fuzz(func(t *testing.T, server, other string) {
		in := strings.Split(server, " ")
		out := normFlags(in)
		for i, fl := range out {
			c, err := mailflags.Canonical(fl)
			if err != nil || c != fl {
				t.Fatalf("normFlags(%q) kept %q (canonical %q, %v)", in, fl, c, err)
			}
			if strings.EqualFold(fl, `\Recent`) {
				t.Fatalf("normFlags(%q) kept \\Recent", in)
			}
			if i > 0 && (out[i-1] >= fl || strings.EqualFold(out[i-1], fl)) {
				t.Fatalf("normFlags(%q) = %q: not sorted or duplicated", in, out)
			}
		}
		if again := normFlags(out); !slices.Equal(again, out) {
			t.Fatalf("normFlags not idempotent: %q then %q", out, again)
		}
		o := strings.Split(other, " ")
		if !sameFlags(in, in) || sameFlags(in, o) != sameFlags(o, in) {
			t.Fatalf("sameFlags not reflexive or symmetric for %q, %q", in, o)
		}
		for _, fl := range toFlags(out) {
			if fl == `\Recent` {
				t.Fatalf("toFlags sends \\Recent")
			}
		}
	})
}

// FuzzHeaderMessageID checks the Message-ID extraction used to rebind
// messages after a UIDVALIDITY change: any header bytes are accepted, and
// the normalised id has no surrounding angle brackets.
func FuzzHeaderMessageID(f *testing.F) {
	for _, s := range []string{
		"Message-ID: <a@b>\r\n", "message-id:   <x@y>  \r\nSubject: s\r\n", "Message-ID <broken\r\n",
		"Subject: no id\r\n", " folded\r\nMessage-ID: <z>\r\n", "\x00\xff: \r\n\r\n", "Message-ID: <<>>\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, header []byte) {
		id := normMessageID(headerMessageID(header))
		if strings.HasPrefix(id, "<") || strings.HasSuffix(id, ">") {
			t.Fatalf("normalised id %q of %q keeps an angle bracket", id, header)
		}
	})
}
