package cli

import (
	"slices"
	"testing"
)

func TestTokenArgs(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"mailbus", "account", "list"}, nil},
		{[]string{"mailbus", "--token", "mbt_a", "account", "list"}, []string{"mbt_a"}},
		{[]string{"mailbus", "--token=mbt_b", "watch"}, []string{"mbt_b"}},
		{[]string{"mailbus", "--token=", "watch"}, []string{""}},
		{[]string{"mailbus", "watch", "--token"}, nil}, // no value: pflag refuses it
		{[]string{"mailbus", "--token", "mbt_a", "--token=mbt_c"}, []string{"mbt_a", "mbt_c"}},
		{[]string{"mailbus", "message", "get", "--", "--token=not-a-flag"}, nil},
		{[]string{"mailbus", "--token-file", "f", "--tokens=x"}, nil},
	} {
		if got := tokenArgs(tt.args); !slices.Equal(got, tt.want) {
			t.Errorf("tokenArgs(%q) = %q, want %q", tt.args, got, tt.want)
		}
	}
}
