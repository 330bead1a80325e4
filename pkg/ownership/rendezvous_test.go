package ownership

import (
	"fmt"
	"slices"
	"testing"
)

func TestOwnerTable(t *testing.T) {
	tests := []struct {
		name    string
		account string
		members []string
		want    string
	}{
		{"no members", "a1", nil, ""},
		{"one member", "a1", []string{"r1"}, "r1"},
		{"empty member list", "a1", []string{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Owner(tt.account, tt.members); got != tt.want {
				t.Errorf("Owner(%q, %v) = %q, want %q", tt.account, tt.members, got, tt.want)
			}
		})
	}
}

// The owner depends on the set of members, not on their order.
func TestOwnerIgnoresOrder(t *testing.T) {
	members := []string{"r1", "r2", "r3", "r4", "r5"}
	for i := range 200 {
		acct := fmt.Sprint("acct-", i)
		want := Owner(acct, members)
		rev := slices.Clone(members)
		slices.Reverse(rev)
		rot := append(slices.Clone(members[2:]), members[:2]...)
		if got := Owner(acct, rev); got != want {
			t.Fatalf("%s: reversed order gives %s, want %s", acct, got, want)
		}
		if got := Owner(acct, rot); got != want {
			t.Fatalf("%s: rotated order gives %s, want %s", acct, got, want)
		}
	}
}

// Each of N members gets about 1/N of the accounts.
func TestOwnerSpread(t *testing.T) {
	members := []string{"pop3fetcher-0", "pop3fetcher-1", "pop3fetcher-2"}
	count := map[string]int{}
	for i := range 3000 {
		count[Owner(fmt.Sprint(i), members)]++
	}
	for _, m := range members {
		if count[m] < 800 || count[m] > 1200 {
			t.Errorf("%s owns %d of 3000 accounts, want about 1000: %v", m, count[m], count)
		}
	}
}

// Adding a 4th member to 3 moves about a quarter of 1,000 accounts, all of
// them to the new member; removing a member moves only its own accounts.
func TestOwnerMovesOnlyItsShare(t *testing.T) {
	for _, set := range [][]string{
		{"a", "b", "c"},
		{"replica-1", "replica-2", "replica-3"},
		{"10.0.0.1", "10.0.0.2", "10.0.0.3"},
	} {
		accounts := make([]string, 1000)
		for i := range accounts {
			accounts[i] = fmt.Sprintf("%08x-account", i*7919)
		}
		before := map[string]string{}
		for _, a := range accounts {
			before[a] = Owner(a, set)
		}
		// add
		added := "new-member"
		grown := append(slices.Clone(set), added)
		moved := 0
		for _, a := range accounts {
			after := Owner(a, grown)
			if after != before[a] {
				moved++
				if after != added {
					t.Fatalf("%v + %s: account %s moved from %s to %s, not to the new member", set, added, a, before[a], after)
				}
			}
		}
		if moved < 250-60 || moved > 250+60 {
			t.Errorf("%v + %s: %d of 1000 accounts moved, want about 250", set, added, moved)
		}
		// remove
		gone := set[1]
		shrunk := []string{set[0], set[2]}
		movedAway := 0
		for _, a := range accounts {
			after := Owner(a, shrunk)
			if before[a] != gone && after != before[a] {
				t.Fatalf("%v - %s: account %s of %s moved to %s", set, gone, a, before[a], after)
			}
			if before[a] == gone {
				movedAway++
			}
		}
		if movedAway < 333-70 || movedAway > 333+70 {
			t.Errorf("%v - %s: the removed member owned %d of 1000, want about 333", set, gone, movedAway)
		}
	}
}
