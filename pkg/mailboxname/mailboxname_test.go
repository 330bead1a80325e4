package mailboxname_test

import (
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/mailboxname"
)

func TestCheckLimits(t *testing.T) {
	levels := func(n int, delim string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = "f"
		}
		return strings.Join(parts, delim)
	}
	for _, c := range []struct {
		name, delim string
		depth       int
		wantErr     string
	}{
		{"INBOX", "/", 1, ""},
		{"a/b/c", "/", 3, ""},
		{"a/b/c", ".", 1, ""},
		{"a.b/c", ".", 2, ""},
		{"a/b/c", "", 1, ""},
		{levels(mailboxname.MaxDepth, "/"), "/", mailboxname.MaxDepth, ""},
		{levels(mailboxname.MaxDepth+1, "/"), "/", mailboxname.MaxDepth + 1, "33 levels deep"},
		{levels(mailboxname.MaxDepth+1, "/"), ".", 1, ""},
		{levels(mailboxname.MaxDepth+1, "/"), "", 1, ""},
		{levels(100, "::"), "::", 100, "more than 32"},
		{strings.Repeat("x", mailboxname.MaxLen), "/", 1, ""},
		{strings.Repeat("x", mailboxname.MaxLen+1), "/", 1, "longer than 1000 bytes"},
		{strings.Repeat("é", mailboxname.MaxLen/2+1), "/", 1, "longer than 1000 bytes"},
	} {
		if got := mailboxname.Depth(c.name, c.delim); got != c.depth {
			t.Errorf("Depth(%.20q…, %q) = %d, want %d", c.name, c.delim, got, c.depth)
		}
		err := mailboxname.CheckLimits(c.name, c.delim)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("CheckLimits(%.20q…, %q) = %v, want nil", c.name, c.delim, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("CheckLimits(%.20q…, %q) = %v, want an error containing %q", c.name, c.delim, err, c.wantErr)
		}
	}
}

func TestCheckShape(t *testing.T) {
	for _, c := range []struct {
		name, delim string
		wantErr     string
	}{
		{"INBOX", "/", ""},
		{"a/b/c", "/", ""},
		{"a.b/c", "/", ""},
		{"...a", "/", ""},
		{"a/..b/c", "/", ""},
		{"Trailing/", "/", "ends with the hierarchy delimiter"},
		{"a/b/", "/", "ends with the hierarchy delimiter"},
		{"/", "/", "only the hierarchy delimiter"},
		{"/a", "/", "starts with the hierarchy delimiter"},
		{"a//b", "/", "empty level"},
		{"a/../b", "/", `".." level`},
		{"..", "/", `".." level`},
		{"a/.", "/", `".." level`},
		{"a..b", ".", "empty level"},
		{"a.", ".", "ends with the hierarchy delimiter"},
		{".", ".", "only the hierarchy delimiter"},
		{"a/b", ".", ""},
		{"a::b::", "::", "ends with the hierarchy delimiter"},
		{"a/", "", ""},
		{"..", "", `".." level`},
	} {
		err := mailboxname.CheckShape(c.name, c.delim)
		switch {
		case c.wantErr == "" && err != nil:
			t.Errorf("CheckShape(%q, %q) = %v, want nil", c.name, c.delim, err)
		case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
			t.Errorf("CheckShape(%q, %q) = %v, want an error containing %q", c.name, c.delim, err, c.wantErr)
		}
	}
}
