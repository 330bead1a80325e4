package imapgw

import (
	"fmt"
	"slices"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// FuzzResolve checks the view's sequence and UID set resolution against
// the definition (RFC 3501 section 9, seq-range): a range is the numbers
// between its ends in either order, "*" (0) is the largest number in use,
// so "n:*" always includes the last message.
func FuzzResolve(f *testing.F) {
	f.Add(uint8(5), uint8(3), uint32(1), uint32(0), true)  // 1:*
	f.Add(uint8(5), uint8(3), uint32(4), uint32(2), false) // 4:2
	f.Add(uint8(3), uint8(7), uint32(100), uint32(0), false)
	f.Add(uint8(0), uint8(1), uint32(1), uint32(1), true)
	f.Fuzz(func(t *testing.T, n, gap uint8, start, stop uint32, uids bool) {
		sel := &selected{}
		uid := uint32(0)
		for i := range int(n) {
			uid += 1 + uint32(gap)%5
			sel.msgs = append(sel.msgs, message{id: string(rune('a' + i%26)), uid: uid})
		}
		var set imap.NumSet
		if uids {
			set = imap.UIDSet{{Start: imap.UID(start), Stop: imap.UID(stop)}}
		} else {
			set = imap.SeqSet{{Start: start, Stop: stop}}
		}
		var want []uint32
		for i, m := range sel.msgs {
			num := uint32(i + 1)
			star := uint32(len(sel.msgs))
			if uids {
				num, star = m.uid, sel.msgs[len(sel.msgs)-1].uid
			}
			lo, hi := start, stop
			if lo == 0 {
				lo = star
			}
			if hi == 0 {
				hi = star
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			if lo <= num && num <= hi {
				want = append(want, m.uid)
			}
		}
		var got []uint32
		for _, m := range sel.resolve(set) {
			got = append(got, m.uid)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("n=%d %v (uids %v): got %v, want %v", n, set, uids, got, want)
		}
		if len(sel.msgs) > 0 && uids && stop == 0 && start != 0 && !slices.Contains(got, sel.msgs[len(sel.msgs)-1].uid) {
			t.Fatalf("%v does not include the last message", set)
		}
	})
}

// TestMissingParents: the levels above mailboxes that are not mailboxes.
func TestMissingParents(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  []string
	}{
		{[]string{"INBOX", "Archive"}, nil},
		{[]string{"INBOX", "Archive/2026"}, []string{"Archive"}},
		{[]string{"a/b/c", "a"}, []string{"a/b"}},
		{[]string{"a/b/c", "x/y"}, []string{"a", "a/b", "x"}},
		{[]string{"/lead"}, nil},
	} {
		if got := missingParents(tc.names, '/'); !slices.Equal(got, tc.want) {
			t.Errorf("missingParents(%v) = %v, want %v", tc.names, got, tc.want)
		}
	}
}

// TestRemoveAndTell: the removed messages' sequence numbers are written
// from the highest down, each valid when written, and the view keeps the
// others in order.
func TestRemoveAndTell(t *testing.T) {
	sel := &selected{}
	for i := range 10 {
		sel.msgs = append(sel.msgs, message{id: fmt.Sprint(i), uid: uint32(i + 1)})
	}
	var got []uint32
	if err := removeAndTell(sel, []string{"7", "2", "3", "42", "9"}, func(seq uint32, _ imap.UID) error { got = append(got, seq); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []uint32{10, 8, 4, 3}; !slices.Equal(got, want) {
		t.Errorf("EXPUNGE %v, want %v", got, want)
	}
	var ids []string
	for _, m := range sel.msgs {
		ids = append(ids, m.id)
	}
	if want := []string{"0", "1", "4", "5", "6", "8"}; !slices.Equal(ids, want) {
		t.Errorf("view %v, want %v", ids, want)
	}
}

// BenchmarkRemoveAndTell: expunging half of a 20,000-message view.
func BenchmarkRemoveAndTell(b *testing.B) {
	var all []message
	var ids []string
	for i := range 20000 {
		all = append(all, message{id: fmt.Sprint(i), uid: uint32(i + 1)})
		if i%2 == 0 {
			ids = append(ids, fmt.Sprint(i))
		}
	}
	for b.Loop() {
		sel := &selected{msgs: slices.Clone(all)}
		if err := removeAndTell(sel, ids, func(uint32, imap.UID) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}
