package mailmsg

import (
	"errors"
	"io"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// FuzzParse checks that Parse never panics, returns valid UTF-8 (protobuf
// must marshal it), numbers parts uniquely, and that OpenPart opens every
// part of the Structure, describing it the same way. More seeds are in
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, s := range []string{msgPlain, msgAlternative, msgMixed, msgNested, msgWindows1252, msgShiftJIS} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkNoBodies(t, raw)
		p := Parse(raw, nil)
		if p.Envelope == nil || p.Structure == nil {
			t.Fatal("nil Envelope or Structure")
		}
		msgs := []proto.Message{p.Envelope, p.Structure}
		for _, a := range p.Attachments {
			msgs = append(msgs, a)
		}
		for _, m := range msgs {
			if _, err := proto.Marshal(m); err != nil {
				t.Fatalf("marshal %T: %v", m, err)
			}
		}
		for _, s := range append([]string{p.TextBody, p.HTMLBody, p.Preview}, p.Errors...) {
			if !utf8.ValidString(s) {
				t.Fatalf("invalid UTF-8: %q", s)
			}
		}
		if n := utf8.RuneCountInString(p.Preview); n > DefaultPreviewLen {
			t.Fatalf("preview of %d runes", n)
		}
		if len(p.TextBody) > DefaultMaxBodyBytes || len(p.HTMLBody) > DefaultMaxBodyBytes {
			t.Fatal("body longer than MaxBodyBytes")
		}

		parts := map[string]*mailbusv1.MimePart{}
		var walk func(*mailbusv1.MimePart)
		walk = func(mp *mailbusv1.MimePart) {
			if _, dup := parts[mp.GetPartId()]; dup {
				t.Fatalf("duplicate part id %q", mp.GetPartId())
			}
			parts[mp.GetPartId()] = mp
			for _, c := range mp.GetParts() {
				walk(c)
			}
		}
		walk(p.Structure)
		for _, a := range p.Attachments {
			if parts[a.GetPartId()] == nil {
				t.Fatalf("attachment %q not in Structure", a.GetPartId())
			}
		}
		opened := 0
		for id, want := range parts {
			if opened++; opened > 50 {
				break
			}
			r, got, err := OpenPart(raw, id)
			if err != nil {
				if !errors.Is(err, ErrNoSuchPart) {
					t.Fatalf("OpenPart(%q): unexpected error %v", id, err)
				}
				t.Fatalf("OpenPart(%q): part of Structure not found: %v", id, err)
			}
			if !proto.Equal(got, want) {
				t.Fatalf("OpenPart(%q) part = %v, want %v", id, got, want)
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				t.Fatalf("OpenPart(%q) read: %v", id, err)
			}
		}
		if _, _, err := OpenPart(raw, "no.such.part"); !errors.Is(err, ErrNoSuchPart) {
			t.Fatalf("OpenPart of a missing part: %v", err)
		}
	})
}
