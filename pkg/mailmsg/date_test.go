package mailmsg

import (
	"net/mail"
	"testing"
	"time"
)

// sameDateResult reports whether two results of a date parse are the
// same: the same instant in a zone of the same name and offset, or the
// same error.
func sameDateResult(t1 time.Time, err1 error, t2 time.Time, err2 error) bool {
	if (err1 == nil) != (err2 == nil) {
		return false
	}
	if err1 != nil {
		return err1.Error() == err2.Error()
	}
	n1, o1 := t1.Zone()
	n2, o2 := t2.Zone()
	return t1.Equal(t2) && n1 == n2 && o1 == o2 && t1.Location().String() == t2.Location().String()
}

// realDates are Date fields as found in real mail: the common forms, and
// obsolete, commented, sloppy and broken ones.
var realDates = []string{
	"Mon, 6 Oct 2025 12:00:00 +0200",
	"Tue, 14 Oct 2025 09:29:58 +0200",
	"Thu, 20 Nov 1997 09:55:06 -0600",
	"Fri, 31 Oct 2025 06:00:00 GMT",
	"Fri, 31 Oct 2025 06:00:00 UT",
	"Fri, 31 Oct 2025 06:00:00 UTC",
	"Fri, 31 Oct 2025 06:00:00 Z",
	"Thu, 20 Nov 1997 09:55:06 MDT",
	"Thu, 20 Nov 1997 09:55:06 MDT (MDT)",
	"Thu, 20 Nov 1997 09:55:06 MDT (This comment)",
	"Tue, 1 Jul 2003 10:52:37 +0200 (CEST)",
	"Wed, 15 Oct 2025 08:01:02 +0000 (UTC)",
	"Wed, 15 Oct 2025 08:01:02 +0000 (Coordinated Universal Time)",
	"Wed, 15 Oct 2025 08:01:02 -0700 (PDT)",
	"Wed, 15 Oct 2025 08:01:02 -0700 (nested (comment) here)",
	"Wed, 15 Oct 2025 08:01:02 -0700 (unclosed",
	"Wed, 15 Oct 2025 08:01:02 -0700 trailing garbage",
	"Wed, 15 Oct 2025 08:01:02 PST",
	"Wed, 15 Oct 2025 08:01:02 EST",
	"Wed, 15 Oct 2025 08:01:02 EDT",
	"Wed, 15 Oct 2025 08:01:02 CEST",
	"Wed, 15 Oct 2025 08:01:02 A",
	"Wed, 15 Oct 2025 08:01 +0200",
	"Wed, 15 Oct 2025 08:01 GMT",
	"15 Oct 2025 08:01:02 +0200",
	"5 Oct 2025 08:01:02 +0200",
	"05 Oct 2025 08:01:02 +0200",
	"3 Nov 2025 17:45 +0100",
	"Mon, 06 Oct 2025 12:00:00 +0200",
	"Mon, 6 Oct 25 12:00:00 +0200",
	"Mon, 6 Oct 99 12:00:00 +0200",
	"Mon, 6 October 2025 12:00:00 +0200",
	"Monday, 6 Oct 2025 12:00:00 +0200",
	"mon, 6 oct 2025 12:00:00 +0200",
	"MON, 6 OCT 2025 12:00:00 +0200",
	"Mon,6 Oct 2025 12:00:00 +0200",
	"Mon, 6 Oct 2025 12:00:00 +02:00",
	"Mon, 6 Oct 2025 12:00:00 +020",
	"Mon, 6 Oct 2025 12:00:00 0200",
	"Mon,  6 Oct 2025 12:00:00 +0200",
	"  Mon, 6 Oct 2025 12:00:00 +0200",
	"Mon, 6 Oct 2025 12:00:00  +0200",
	"Mon, 6 Oct 2025  12:00:00 +0200",
	"Mon, 6 Oct 2025 12:00:00\t+0200",
	"Mon, 6 Oct 2025 1:02:03 +0200",
	"Mon, 6 Oct 2025 12:0:00 +0200",
	"Mon, 6 Oct 2025 24:00:00 +0200",
	"Mon, 6 Oct 2025 12:60:00 +0200",
	"Mon, 6 Oct 2025 12:00:60 +0200",
	"Mon, 6 Oct 2025 12:00:00 +2500",
	"Mon, 6 Oct 2025 12:00:00 +2460",
	"Mon, 32 Oct 2025 12:00:00 +0200",
	"Mon, 29 Feb 2025 12:00:00 +0200",
	"Mon, 29 Feb 2024 12:00:00 +0200",
	"Mon, 6 Oct 0000 12:00:00 +0200",
	"Mon, 6 Oct 9999 23:59:59 -1200",
	"Mon, 6 Oct 2025 12:00:00.123 +0200",
	"Xyz, 6 Oct 2025 12:00:00 +0200",
	"Mon, 6 Foo 2025 12:00:00 +0200",
	"Mon, 123 Oct 2025 12:00:00 +0200",
	"Mon, 6 Oct 2025 12:00:00 -0000",
	"Mon, 6 Oct 2025 12:00:00 +0000",
	"Mon, 6-Oct-2025 12:00:00 +0200",
	"Mon, 6 Oct 2025 12:00:00 +0200\r\n",
	"Mon, 6 Oct 2025\r\n 12:00:00 +0200",
	"Mon, 6 Oct 2025 12:00:00 +0200\r",
	"Mon Oct  6 12:00:00 2025",
	"Mon Oct 6 12:00:00 PDT 2025",
	"2025-10-06T12:00:00+02:00",
	"2025-10-06 12:00:00 +0200",
	"2025-10-06 12:00:00",
	"Mon, 6 Oct 2025 12:00:00",
	"6 Oct 2025 12:00",
	"Mon, 6 Oct 2025",
	"Tue",
	"T",
	"TTTTT",
	"+0200",
	"",
	"   ",
	"garbage",
	"(comment) Mon, 6 Oct 2025 12:00:00 +0200",
	"Mon, 6 Oct 2025 12:00:00 +0200 (",
	"Mon, 6 Oct 2025 12:00:00 +0200 (a\\)b)",
	"Mon, 6 Oct 2025 12:00:00 +0200 (a) (b)",
	"Mon, 6 Oct 2025 12:00:00 +0200 (a) x (b",
	"Tue, 6 Oct 2025 12:00:00 ET",
	"Sat, 6 Oct 2025 12:00:00 WITA",
	"Sat, 6 Oct 2025 12:00:00 ChST",
	"Sat, 6 Oct 2025 12:00:00 GMT+2",
	"Sat, 6 Oct 2025 12:00:00 GMT+0200",
	"Sat, 6 Oct 2025 12:00:00 EST5EDT",
	"Sat, 6 Oct 2025 12:00:00 ABCDEFT",
	"Sat, 6 Oct 2025 12:00:00 é",
	"Sat, 6 Oct 2025 12:00:00 +0200 é",
}

// TestMailParseDate checks that the fast path gives net/mail.ParseDate's
// results, in UTC and in a local zone that knows US zone names.
func TestMailParseDate(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no time zone data: %v", err)
	}
	saved := time.Local
	t.Cleanup(func() { time.Local = saved })
	fast := 0
	for _, local := range []*time.Location{time.UTC, ny} {
		time.Local = local
		for _, v := range realDates {
			got, gotErr := mailParseDate(v)
			want, wantErr := mail.ParseDate(v)
			if !sameDateResult(got, gotErr, want, wantErr) {
				t.Errorf("local %s: mailParseDate(%q) = %v, %v; net/mail: %v, %v", local, v, got, gotErr, want, wantErr)
			}
			if _, _, ok := quickDateLayout(v); ok {
				fast++
			}
		}
	}
	if fast < 40 {
		t.Errorf("the fast path took only %d of the dates", fast)
	}
}

// TestQuickDateCommonForms checks that the common forms take the fast path.
func TestQuickDateCommonForms(t *testing.T) {
	for _, v := range []string{
		"Mon, 6 Oct 2025 12:00:00 +0200",
		"Mon, 6 Oct 2025 12:00:00 +0200 (CEST)",
		"6 Oct 2025 12:00:00 -0700",
		"Mon, 6 Oct 2025 12:00 +0200",
		"Fri, 31 Oct 2025 06:00:00 GMT",
		"Thu, 20 Nov 1997 09:55:06 MDT (MDT)",
	} {
		layout, date, ok := quickDateLayout(v)
		if !ok {
			t.Errorf("%q: not on the fast path", v)
			continue
		}
		if _, err := time.Parse(layout, date); err != nil {
			t.Errorf("%q: layout %q: %v", v, layout, err)
		}
	}
}

// FuzzMailParseDate compares mailParseDate with net/mail.ParseDate.
func FuzzMailParseDate(f *testing.F) {
	for _, v := range realDates {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, gotErr := mailParseDate(v)
		want, wantErr := mail.ParseDate(v)
		if !sameDateResult(got, gotErr, want, wantErr) {
			t.Fatalf("mailParseDate(%q) = %v, %v; net/mail: %v, %v", v, got, gotErr, want, wantErr)
		}
	})
}
