package mailmsg

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// outline renders a MIME tree one part a line, for comparison.
func outline(p *mailbusv1.MimePart) string {
	var sb strings.Builder
	var walk func(p *mailbusv1.MimePart, depth int)
	walk = func(p *mailbusv1.MimePart, depth int) {
		fmt.Fprintf(&sb, "%s%q %s", strings.Repeat("  ", depth), p.GetPartId(), p.GetContentType())
		if p.GetCharset() != "" {
			fmt.Fprintf(&sb, " charset=%s", p.GetCharset())
		}
		if p.GetDisposition() != "" {
			fmt.Fprintf(&sb, " disposition=%s", p.GetDisposition())
		}
		if p.GetFilename() != "" {
			fmt.Fprintf(&sb, " filename=%q", p.GetFilename())
		}
		if p.GetContentId() != "" {
			fmt.Fprintf(&sb, " cid=%s", p.GetContentId())
		}
		fmt.Fprintf(&sb, " %s size=%d\n", p.GetTransferEncoding(), p.GetSize())
		for _, c := range p.GetParts() {
			walk(c, depth+1)
		}
	}
	walk(p, 0)
	return sb.String()
}

// attList renders attachments one a line, for comparison.
func attList(atts []*mailbusv1.Attachment) string {
	var sb strings.Builder
	for _, a := range atts {
		fmt.Fprintf(&sb, "%q %s %q size=%d cid=%q inline=%v\n",
			a.GetPartId(), a.GetContentType(), a.GetFilename(), a.GetSize(), a.GetContentId(), a.GetInline())
	}
	return sb.String()
}

// addr is a shorthand for an address.
func addr(name, email string) *mailbusv1.Address {
	return &mailbusv1.Address{Name: name, Email: email}
}

// ts is a shorthand for a timestamp.
func ts(s string) *timestamppb.Timestamp {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return timestamppb.New(t)
}

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		envelope  *mailbusv1.Envelope
		structure string
		text      string
		html      string
		preview   string
		atts      string
		hasAtts   bool
	}{
		{
			name: "plain text",
			raw:  msgPlain,
			envelope: &mailbusv1.Envelope{
				Subject:    "Lunch on Friday?",
				From:       []*mailbusv1.Address{addr("Alice Example", "alice@example.com")},
				To:         []*mailbusv1.Address{addr("Bob", "bob@example.net"), addr("Carol, Jr.", "carol@example.org")},
				Cc:         []*mailbusv1.Address{addr("", "dave@example.org")},
				Date:       ts("2025-10-14T07:29:58Z"),
				MessageId:  "20251014072958.1234@example.com",
				InReplyTo:  []string{"prev-1@example.net"},
				References: []string{"root-0@example.net", "prev-1@example.net"},
			},
			structure: `"1" text/plain charset=utf-8 7bit size=55` + "\n",
			text:      "Hi Bob,\n\nare you free for lunch on Friday?\n\nAlice\n",
			preview:   "Hi Bob, are you free for lunch on Friday? Alice",
		},
		{
			name: "multipart/alternative, quoted-printable, LF",
			raw:  msgAlternative,
			envelope: &mailbusv1.Envelope{
				Subject:   "Grüße aus Köln ✓",
				From:      []*mailbusv1.Address{addr("Shop Team", "news@shop.example")},
				To:        []*mailbusv1.Address{addr("", "customer@example.com")},
				Date:      ts("2025-10-15T18:00:00Z"),
				MessageId: "alt-1@shop.example",
			},
			structure: `"" multipart/alternative 7bit size=453
  "1" text/plain charset=utf-8 quoted-printable size=64
  "2" text/html charset=utf-8 quoted-printable size=139
`,
			text:    "Café special: two for one. \nThis line is soft wrapped.\n",
			html:    "<html><head><title>Offer</title><style>p{color:red}</style></head><body><p>Café special: <b>two</b>&nbsp;for one.</p></body></html>\n",
			preview: "Café special: two for one. This line is soft wrapped.",
		},
		{
			name: "multipart/mixed with related HTML, inline image and PDF",
			raw:  msgMixed,
			envelope: &mailbusv1.Envelope{
				Subject:   "Rapport financier été",
				From:      []*mailbusv1.Address{addr("François Dupont", "francois@example.fr")},
				To:        []*mailbusv1.Address{addr("", "team@example.com")},
				Date:      ts("2025-10-16T08:15:00Z"),
				MessageId: "mixed-1@example.fr",
			},
			structure: `"" multipart/mixed 7bit size=1037
  "1" multipart/related 7bit size=606
    "1.1" multipart/alternative 7bit size=332
      "1.1.1" text/plain charset=iso-8859-1 quoted-printable size=48
      "1.1.2" text/html charset=iso-8859-1 quoted-printable size=63
    "1.2" image/png filename="logo.png" cid=logo@example.fr base64 size=40
  "2" application/pdf disposition=attachment filename="rapport.pdf" base64 size=114
`,
			text:    "Bonjour à tous,\nvoici le rapport d'été.\n",
			html:    "<p>Bonjour à tous,<br><img src=\"cid:logo@example.fr\"></p>\n",
			preview: "Bonjour à tous, voici le rapport d'été.",
			atts: `"1.2" image/png "logo.png" size=40 cid="logo@example.fr" inline=true
"2" application/pdf "rapport.pdf" size=114 cid="" inline=false
`,
			hasAtts: true,
		},
		{
			name: "nested message/rfc822",
			raw:  msgNested,
			envelope: &mailbusv1.Envelope{
				Subject: "Fwd: two messages",
				From:    []*mailbusv1.Address{addr("Bob", "bob@example.net")},
				To:      []*mailbusv1.Address{addr("Alice", "alice@example.com")},
				Date:    ts("2025-10-17T12:00:00Z"),
			},
			structure: `"" multipart/mixed 7bit size=514
  "1" text/plain 7bit size=27
  "2" message/rfc822 7bit size=245
    "2.TEXT" multipart/alternative 7bit size=141
      "2.1" text/plain charset=us-ascii 7bit size=10
      "2.2" text/html charset=us-ascii 7bit size=17
  "3" message/rfc822 disposition=attachment filename="fwd.eml" 7bit size=67
    "3.1" text/plain 7bit size=17
`,
			text:    "See the forwarded messages.",
			preview: "See the forwarded messages.",
			atts: `"2" message/rfc822 "" size=245 cid="" inline=false
"3" message/rfc822 "fwd.eml" size=67 cid="" inline=false
`,
			hasAtts: true,
		},
		{
			name: "windows-1252 8-bit body",
			raw:  msgWindows1252,
			envelope: &mailbusv1.Envelope{
				Subject: "Quote",
				From:    []*mailbusv1.Address{addr("Eve", "eve@example.com")},
			},
			structure: `"1" text/plain charset=windows-1252 8bit size=34` + "\n",
			text:      "“Smart quotes” cost € 5 – naïve.\n",
			preview:   "“Smart quotes” cost € 5 – naïve.",
		},
		{
			name: "Shift_JIS base64 body, ISO-2022-JP name",
			raw:  msgShiftJIS,
			envelope: &mailbusv1.Envelope{
				Subject: "日本語のテキスト",
				From:    []*mailbusv1.Address{addr("会議の件", "tanaka@example.jp")},
			},
			structure: `"1" text/plain charset=shift_jis base64 size=26` + "\n",
			text:      "日本語のテキスト",
			preview:   "日本語のテキスト",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parse([]byte(tt.raw), nil)
			checkNoBodies(t, []byte(tt.raw))
			if len(p.Errors) != 0 {
				t.Errorf("Errors = %q, want none", p.Errors)
			}
			if !proto.Equal(p.Envelope, tt.envelope) {
				t.Errorf("Envelope =\n%v\nwant\n%v", p.Envelope, tt.envelope)
			}
			if got := outline(p.Structure); got != tt.structure {
				t.Errorf("Structure =\n%s\nwant\n%s", got, tt.structure)
			}
			if p.TextBody != tt.text {
				t.Errorf("TextBody = %q, want %q", p.TextBody, tt.text)
			}
			if p.HTMLBody != tt.html {
				t.Errorf("HTMLBody = %q, want %q", p.HTMLBody, tt.html)
			}
			if p.Preview != tt.preview {
				t.Errorf("Preview = %q, want %q", p.Preview, tt.preview)
			}
			if got := attList(p.Attachments); got != tt.atts {
				t.Errorf("Attachments =\n%s\nwant\n%s", got, tt.atts)
			}
			if p.HasAttachments != tt.hasAtts {
				t.Errorf("HasAttachments = %v, want %v", p.HasAttachments, tt.hasAtts)
			}
		})
	}
}

func TestOptions(t *testing.T) {
	t.Run("preview length", func(t *testing.T) {
		p := Parse([]byte(msgPlain), &Options{PreviewLen: 10})
		if want := "Hi Bob, ar"; p.Preview != want {
			t.Errorf("Preview = %q, want %q", p.Preview, want)
		}
	})
	t.Run("body bytes", func(t *testing.T) {
		p := Parse([]byte(msgWindows1252), &Options{MaxBodyBytes: 8})
		// "“" is 3 bytes: "“Smart" is 8, "“Smart " would be 9.
		if want := "“Smart"; p.TextBody != want {
			t.Errorf("TextBody = %q, want %q", p.TextBody, want)
		}
		wantErrors(t, p.Errors, "part 1: text longer than 8 bytes; truncated")
	})
	t.Run("depth", func(t *testing.T) {
		p := Parse([]byte(msgMixed), &Options{MaxDepth: 2})
		want := `"" multipart/mixed 7bit size=1037
  "1" multipart/related 7bit size=606
    "1.1" multipart/alternative 7bit size=332
    "1.2" image/png filename="logo.png" cid=logo@example.fr base64 size=40
  "2" application/pdf disposition=attachment filename="rapport.pdf" base64 size=114
`
		if got := outline(p.Structure); got != want {
			t.Errorf("Structure =\n%s\nwant\n%s", got, want)
		}
		if p.TextBody != "" {
			t.Errorf("TextBody = %q, want none", p.TextBody)
		}
		wantErrors(t, p.Errors, "part 1.1: nested deeper than 2; not parsed further")
	})
	t.Run("parts", func(t *testing.T) {
		p := Parse([]byte(msgMixed), &Options{MaxParts: 3})
		want := `"" multipart/mixed 7bit size=1037
  "1" multipart/related 7bit size=606
    "1.1" multipart/alternative 7bit size=332
`
		if got := outline(p.Structure); got != want {
			t.Errorf("Structure =\n%s\nwant\n%s", got, want)
		}
		wantErrors(t, p.Errors,
			"part 1.1: more than 3 parts; not parsed further",
			"part 1: more than 3 parts; not parsed further",
			"message: more than 3 parts; not parsed further")
	})
}

// wantErrors fails unless errs is exactly want.
func wantErrors(t *testing.T, errs []string, want ...string) {
	t.Helper()
	if strings.Join(errs, "\n") != strings.Join(want, "\n") {
		t.Errorf("Errors =\n%s\nwant\n%s", strings.Join(errs, "\n"), strings.Join(want, "\n"))
	}
}
