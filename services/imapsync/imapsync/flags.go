package imapsync

import (
	"slices"
	"strings"

	"github.com/emersion/go-imap/v2"

	"github.com/mailbus/mailbus/pkg/mailflags"
)

func flagStrings(fl []imap.Flag) []string {
	out := make([]string, len(fl))
	for i, f := range fl {
		out[i] = string(f)
	}
	return out
}

func toFlags(fl []string) []imap.Flag {
	out := make([]imap.Flag, 0, len(fl))
	for _, f := range fl {
		if f == `\Recent` {
			continue
		}
		out = append(out, imap.Flag(f))
	}
	return out
}

// normFlags keeps the valid flags of a server's list in canonical form
// (\Recent and anything the store would refuse are dropped).
func normFlags(fl []string) []string {
	out := make([]string, 0, len(fl))
	for _, f := range fl {
		if c, err := mailflags.Canonical(f); err == nil {
			out = append(out, c)
		}
	}
	out, _ = mailflags.Normalize(out)
	return out
}

func sameFlags(a, b []string) bool {
	a, b = normFlags(a), normFlags(b)
	return slices.EqualFunc(a, b, strings.EqualFold)
}
