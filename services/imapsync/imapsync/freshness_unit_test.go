package imapsync

import (
	"testing"
	"time"
)

// TestFreshnessAge: the age is that of the least recently checked folder
// of the last LIST; a folder never checked counts from the worker's start,
// and a folder gone from the list no longer counts.
func TestFreshnessAge(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	for _, c := range []struct {
		name    string
		folders []string
		checked []check // in this order
		now     int
		want    time.Duration
	}{
		{"not listed yet", nil, nil, 30, 30 * time.Second},
		{"never checked", []string{"INBOX"}, nil, 30, 30 * time.Second},
		{"all checked", []string{"INBOX", "Archive"}, []check{{"INBOX", 20}, {"Archive", 25}}, 30, 10 * time.Second},
		{"one never checked", []string{"INBOX", "Archive"}, []check{{"INBOX", 20}}, 30, 30 * time.Second},
		{"a check of a folder gone", []string{"INBOX"}, []check{{"INBOX", 28}, {"Old", 1}}, 30, 2 * time.Second},
		{"an older check does not move one back", []string{"INBOX"}, []check{{"INBOX", 29}, {"INBOX", 1}}, 30, time.Second},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFreshness(t0)
			for _, ch := range c.checked {
				f.check(ch.folder, at(ch.second))
			}
			if c.folders != nil {
				f.setFolders(c.folders)
			}
			if got := f.age(at(c.now)); got != c.want {
				t.Errorf("age %v, want %v", got, c.want)
			}
		})
	}
}

// check is a folder checked a number of seconds after the start.
type check struct {
	folder string
	second int
}

// TestFreshnessMissed: noPushAfter misses in a row find the server out,
// once; a push in between starts the count again.
func TestFreshnessMissed(t *testing.T) {
	f := newFreshness(time.Now())
	for range noPushAfter - 1 {
		if f.missed() {
			t.Fatal("found out too early")
		}
	}
	f.pushed()
	for range noPushAfter - 1 {
		if f.missed() {
			t.Fatal("found out though a push came between the misses")
		}
	}
	if !f.missed() {
		t.Fatalf("not found out after %d misses in a row", noPushAfter)
	}
	if !f.noPushFound() {
		t.Error("noPushFound false after the server was found out")
	}
	for range noPushAfter {
		if f.missed() {
			t.Error("found out twice")
		}
	}
}
