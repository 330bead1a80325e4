package mailmsg

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
)

// noBodiesOptions are the options under which checkNoBodies compares: the
// defaults, and limits small enough to cut bodies and previews.
var noBodiesOptions = []Options{
	{},
	{MaxBodyBytes: 8},
	{MaxBodyBytes: 100, PreviewLen: 5},
	{PreviewLen: 1},
	{MaxBodyBytes: 1000, PreviewLen: 40},
}

// checkNoBodies checks that Parse with NoBodies gives what Parse gives
// without it, bodies aside.
func checkNoBodies(t *testing.T, raw []byte) {
	t.Helper()
	for _, o := range noBodiesOptions {
		want := Parse(raw, &o)
		nb := o
		nb.NoBodies = true
		got := Parse(raw, &nb)
		if got.TextBody != "" || got.HTMLBody != "" {
			t.Fatalf("options %+v: NoBodies kept bodies %q, %q", o, got.TextBody, got.HTMLBody)
		}
		if got.Preview != want.Preview {
			t.Fatalf("options %+v: NoBodies preview %q, want %q", o, got.Preview, want.Preview)
		}
		if strings.Join(got.Errors, "\n") != strings.Join(want.Errors, "\n") {
			t.Fatalf("options %+v: NoBodies errors %q, want %q", o, got.Errors, want.Errors)
		}
		if got.HasAttachments != want.HasAttachments || len(got.Attachments) != len(want.Attachments) ||
			!proto.Equal(got.Envelope, want.Envelope) || !proto.Equal(got.Structure, want.Structure) {
			t.Fatalf("options %+v: NoBodies changed the envelope, structure or attachments", o)
		}
		for i := range got.Attachments {
			if !proto.Equal(got.Attachments[i], want.Attachments[i]) {
				t.Fatalf("options %+v: NoBodies changed attachment %d", o, i)
			}
		}
	}
}

// fuzzSeeds returns the inputs stored in testdata/fuzz/FuzzParse.
func fuzzSeeds(t *testing.T) map[string][]byte {
	files, err := filepath.Glob("testdata/fuzz/FuzzParse/*")
	if err != nil {
		t.Fatal(err)
	}
	seeds := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, rest, _ := strings.Cut(string(b), "\n")
		v, err := strconv.Unquote(strings.TrimSuffix(strings.TrimSpace(strings.TrimPrefix(rest, "[]byte(")), ")"))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		seeds[filepath.Base(f)] = []byte(v)
	}
	if len(seeds) == 0 {
		t.Fatal("no fuzz seeds")
	}
	return seeds
}

// TestNoBodies checks Options.NoBodies on the samples, the benchmark
// corpus, the fuzz seeds and messages made to reach its edges.
func TestNoBodies(t *testing.T) {
	inputs := benchCorpus()
	for name, s := range map[string]string{
		"plain": msgPlain, "alternative": msgAlternative, "mixed": msgMixed,
		"nested": msgNested, "windows1252": msgWindows1252, "shiftjis": msgShiftJIS,
	} {
		inputs["sample "+name] = []byte(s)
	}
	for name, raw := range fuzzSeeds(t) {
		inputs["seed "+name] = raw
	}
	two := func(a, b, typ string) []byte {
		return []byte("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: " + typ + "\r\n\r\n" +
			a + "\r\n--b\r\nContent-Type: " + typ + "\r\n\r\n" + b + "\r\n--b--\r\n")
	}
	inputs["two texts"] = two("first", "second", "text/plain")
	inputs["two texts, first empty"] = two("", "second", "text/plain")
	inputs["two texts, first ends a line"] = two("first\r\n", "second", "text/plain")
	inputs["two htmls"] = two("<p>first</p>", "<p>second &amp; more</p>", "text/html")
	inputs["blank text, html"] = []byte("Content-Type: multipart/alternative; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\n \r\n \r\n--b\r\nContent-Type: text/html\r\n\r\n<p>the &amp;html\r\n;</p>\r\n--b--\r\n")
	inputs["white space beyond the body limit"] = []byte("Subject: x\r\n\r\n" + strings.Repeat(" \r\n", 400) + "late text")
	inputs["CRLF at the body limit"] = []byte("Subject: x\r\n\r\n" + strings.Repeat("ab\r\n", 30))
	inputs["invalid utf-8"] = []byte("Content-Type: text/plain; charset=utf-8\r\n\r\nbad \xff byte\r\n")
	inputs["latin1 html"] = []byte("Content-Type: text/html\r\n\r\n<meta charset=\"iso-8859-1\"><p>caf\xe9</p>\r\n")
	inputs["cut quoted-printable"] = []byte("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + strings.Repeat("a=3Db ", 100) + "=Z")
	for name, raw := range inputs {
		t.Run(name, func(t *testing.T) { checkNoBodies(t, raw) })
	}
}
