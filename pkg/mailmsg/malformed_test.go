package mailmsg

import (
	"testing"
)

func TestMalformed(t *testing.T) {
	tests := []struct {
		name      string
		raw       string
		subject   string
		structure string
		text      string
		html      string
		preview   string
		atts      string
		errs      []string
	}{
		{
			name:      "empty input",
			raw:       "",
			structure: `"1" text/plain 7bit size=0` + "\n",
			errs:      []string{"message: empty"},
		},
		{
			name:      "no header at all",
			raw:       "just some text\nwithout a header\n",
			structure: `"1" text/plain 7bit size=32` + "\n",
			text:      "just some text\nwithout a header\n",
			preview:   "just some text without a header",
			errs:      []string{"message: no header; read all as body"},
		},
		{
			name:      "no blank line between header and body",
			raw:       "Subject: hi\nThis is body text\nmore\n",
			subject:   "hi",
			structure: `"1" text/plain 7bit size=23` + "\n",
			text:      "This is body text\nmore\n",
			preview:   "This is body text more",
			errs:      []string{"message: no blank line between header and body"},
		},
		{
			name:      "header line without colon",
			raw:       "Subject: hi\r\nX-Broken header line\r\nFrom: a@b.c\r\n\r\nbody\r\n",
			subject:   "hi",
			structure: `"1" text/plain 7bit size=6` + "\n",
			text:      "body\n",
			preview:   "body",
			errs:      []string{"message: header line 2 is not a field; skipped"},
		},
		{
			name:      "header only, no blank line",
			raw:       "Subject: only header\n",
			subject:   "only header",
			structure: `"1" text/plain 7bit size=0` + "\n",
		},
		{
			name:      "mbox From line",
			raw:       "From mbox@host Thu Jan  1 00:00:00 2025\nSubject: mbox\n\nbody\n",
			subject:   "mbox",
			structure: `"1" text/plain 7bit size=5` + "\n",
			text:      "body\n",
			preview:   "body",
		},
		{
			name:      "bad base64",
			raw:       "Subject: b64\nContent-Type: text/plain\nContent-Transfer-Encoding: base64\n\nSGVsbG8g!!d29ybGQ=\n",
			subject:   "b64",
			structure: `"1" text/plain base64 size=19` + "\n",
			text:      "Hello world",
			preview:   "Hello world",
			errs:      []string{"part 1: bad base64: byte 0x21"},
		},
		{
			name:    "missing closing boundary",
			raw:     "Subject: unclosed\nContent-Type: multipart/mixed; boundary=x\n\n--x\n\nfirst\n--x\nContent-Type: text/html\n\n<b>second</b>\n",
			subject: "unclosed",
			structure: `"" multipart/mixed 7bit size=54
  "1" text/plain 7bit size=5
  "2" text/html 7bit size=14
`,
			text:    "first",
			html:    "<b>second</b>\n",
			preview: "first",
			errs:    []string{"message: multipart/mixed: no closing boundary"},
		},
		{
			name:      "boundary never occurs",
			raw:       "Subject: missing\nContent-Type: multipart/mixed; boundary=nothere\n\nplain words\n",
			subject:   "missing",
			structure: `"1" text/plain 7bit size=12` + "\n",
			text:      "plain words\n",
			preview:   "plain words",
			errs:      []string{"message: multipart/mixed: boundary not found; read as text/plain"},
		},
		{
			name:      "multipart without boundary parameter",
			raw:       "Subject: noboundary\nContent-Type: multipart/alternative\n\nplain words\n",
			subject:   "noboundary",
			structure: `"1" text/plain 7bit size=12` + "\n",
			text:      "plain words\n",
			preview:   "plain words",
			errs:      []string{"message: multipart/alternative without boundary; read as text/plain"},
		},
		{
			name:      "unknown charset",
			raw:       "Subject: unknown\nContent-Type: text/plain; charset=x-mac-klingon\n\nQ\xe4pla\n",
			subject:   "unknown",
			structure: `"1" text/plain charset=x-mac-klingon 7bit size=6` + "\n",
			text:      "Q\uFFFDpla\n",
			preview:   "Q\uFFFDpla",
			errs:      []string{`part 1: unknown charset "x-mac-klingon"`},
		},
		{
			name:      "invalid content type",
			raw:       "Subject: bad ct\nContent-Type: text\n\nhello\n",
			subject:   "bad ct",
			structure: `"1" text/plain 7bit size=6` + "\n",
			text:      "hello\n",
			preview:   "hello",
			errs:      []string{`message: invalid content-type "text"; read as text/plain`},
		},
		{
			name:      "unterminated quoted charset, 8-bit HTML",
			raw:       "Content-Type: text/html; charset=\"iso-8859-1\n\n<p>caf\xe9</p>\n",
			structure: `"1" text/html charset=iso-8859-1 7bit size=12` + "\n",
			html:      "<p>café</p>\n",
			preview:   "café",
		},
		{
			name:      "HTML charset from meta",
			raw:       "Content-Type: text/html\n\n<html><head><meta charset=\"windows-1251\"></head><body>\xcf\xf0\xe8\xe2\xe5\xf2 &amp; bye</body></html>\n",
			structure: `"1" text/html 7bit size=85` + "\n",
			html:      "<html><head><meta charset=\"windows-1251\"></head><body>Привет &amp; bye</body></html>\n",
			preview:   "Привет & bye",
		},
		{
			name: "inline text parts around an image are joined",
			raw:  "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\none\n--b\nContent-Type: image/gif\nContent-Disposition: inline\n\nGIF\n--b\nContent-Type: text/plain\n\ntwo\n--b--\n",
			structure: `"" multipart/mixed 7bit size=135
  "1" text/plain 7bit size=3
  "2" image/gif disposition=inline 7bit size=3
  "3" text/plain 7bit size=3
`,
			text:    "one\ntwo",
			preview: "one two",
			atts:    `"2" image/gif "" size=3 cid="" inline=true` + "\n",
		},
		{
			name: "digest defaults to message/rfc822",
			raw:  "Content-Type: multipart/digest; boundary=d\n\n--d\n\nSubject: in digest\n\nhello\n--d--\n",
			structure: `"" multipart/digest 7bit size=37
  "1" message/rfc822 7bit size=25
    "1.1" text/plain 7bit size=5
`,
			atts: `"1" message/rfc822 "" size=25 cid="" inline=false` + "\n",
		},
		{
			name: "empty parts",
			raw:  "Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\n--b--\n",
			structure: `"" multipart/mixed 7bit size=14
  "1" text/plain 7bit size=0
  "2" text/plain 7bit size=0
`,
		},
		{
			name: "base64 encoded message/rfc822",
			raw:  "Content-Type: message/rfc822\nContent-Transfer-Encoding: base64\n\nU3ViamVjdDogaW5uZXIKCmJvZHkK\n",
			structure: `"1" message/rfc822 base64 size=29
  "1.1" text/plain 7bit size=5
`,
			atts: `"1" message/rfc822 "" size=29 cid="" inline=false` + "\n",
		},
		{
			name:      "8-bit subject in the declared charset",
			raw:       "Subject: \xf0\xd2\xc9\xd7\xc5\xd4\nContent-Type: text/plain; charset=koi8-r\n\n\xcd\xc9\xd2\n",
			subject:   "Привет",
			structure: `"1" text/plain charset=koi8-r 7bit size=4` + "\n",
			text:      "мир\n",
			preview:   "мир",
		},
		{
			name: "alternative with other renderings and an invitation",
			raw: `Content-Type: multipart/alternative; boundary=a

--a
Content-Type: text/plain

plain
--a
Content-Type: text/enriched

<bold>rich</bold>
--a
Content-Type: multipart/related; boundary=r

--r
Content-Type: text/html

<img src="cid:i">
--r
Content-Type: image/gif
Content-ID: <i>

GIF
--r--
--a
Content-Type: text/calendar; method=REQUEST; name=invite.ics

BEGIN:VCALENDAR
--a--
`,
			structure: `"" multipart/alternative 7bit size=326
  "1" text/plain 7bit size=5
  "2" text/enriched 7bit size=17
  "3" multipart/related 7bit size=101
    "3.1" text/html 7bit size=17
    "3.2" image/gif cid=i 7bit size=3
  "4" text/calendar filename="invite.ics" 7bit size=15
`,
			text:    "plain",
			html:    `<img src="cid:i">`,
			preview: "plain",
			atts: `"3.2" image/gif "" size=3 cid="i" inline=true
"4" text/calendar "invite.ics" size=15 cid="" inline=false
`,
		},
		{
			name: "nested boundary starting with the outer one",
			raw:  "Content-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: multipart/alternative; boundary=b-2\n\n--b-2\n\nx\n--b-2--\n--b--\n",
			structure: `"" multipart/mixed 7bit size=78
  "1" multipart/alternative 7bit size=16
    "1.1" text/plain 7bit size=1
`,
			text:    "x",
			preview: "x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parse([]byte(tt.raw), nil)
			checkNoBodies(t, []byte(tt.raw))
			if p.Envelope.GetSubject() != tt.subject {
				t.Errorf("Subject = %q, want %q", p.Envelope.GetSubject(), tt.subject)
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
			wantErrors(t, p.Errors, tt.errs...)
		})
	}
}
