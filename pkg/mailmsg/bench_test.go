package mailmsg

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
)

// benchMessage builds a realistic multipart message of about 10 KB: a
// quoted-printable text and HTML alternative and a base64 attachment.
func benchMessage() []byte {
	var sb strings.Builder
	sb.WriteString(crlf(`Received: from mx.example.com by mail.example.net; Mon, 6 Oct 2025 10:00:00 +0000
From: =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>
To: Team <team@example.com>, "Smith, Jane" <jane@example.com>
Cc: a@example.com, b@example.com
Subject: =?UTF-8?B?UXVhcnRhbHNiZXJpY2h0IFEzIOKAkyDDnGJlcnNpY2h0?=
Date: Mon, 6 Oct 2025 12:00:00 +0200
Message-ID: <bench-1@example.de>
References: <a@example.de> <b@example.de>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="mix"

--mix
Content-Type: multipart/alternative; boundary="alt"

--alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

`))
	for i := 0; i < 30; i++ {
		sb.WriteString("Gr=C3=BC=C3=9Fe, hier ist der Bericht f=C3=BCr das dritte Quartal. Zeile\r\n")
	}
	sb.WriteString(crlf(`
--alt
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: quoted-printable

<html><body>
`))
	for i := 0; i < 30; i++ {
		sb.WriteString("<p>Gr=C3=BC=C3=9Fe, hier ist der <b>Bericht</b> f=C3=BCr das Quartal.</p>\r\n")
	}
	sb.WriteString(crlf(`</body></html>
--alt--

--mix
Content-Type: application/pdf; name="bericht.pdf"
Content-Disposition: attachment; filename*=UTF-8''Bericht%20Q3.pdf
Content-Transfer-Encoding: base64

`))
	data := base64.StdEncoding.EncodeToString([]byte(strings.Repeat(pdfBytes, 48)))
	for len(data) > 76 {
		sb.WriteString(data[:76] + "\r\n")
		data = data[76:]
	}
	sb.WriteString(data + "\r\n--mix--\r\n")
	return []byte(sb.String())
}

func BenchmarkParse(b *testing.B) {
	raw := benchMessage()
	if p := Parse(raw, nil); len(p.Errors) != 0 || len(p.Attachments) != 1 {
		b.Fatalf("bench message: errors %q, %d attachments", p.Errors, len(p.Attachments))
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		Parse(raw, nil)
	}
}

// benchCorpus is a mix of the messages an initial sync meets: plain text,
// multipart/alternative with HTML, attachments, quoted-printable and
// base64 text, encoded-word headers, a legacy charset, an HTML-only
// newsletter and a large message.
func benchCorpus() map[string][]byte {
	var large strings.Builder
	large.WriteString(crlf("From: Big <big@example.com>\nTo: a@example.com\nSubject: logs\nDate: Wed, 15 Oct 2025 08:01:02 +0000 (UTC)\nMessage-ID: <large@example.com>\nContent-Type: text/plain; charset=us-ascii\n\n"))
	for large.Len() < 300<<10 {
		large.WriteString("2025-10-15T08:01:02Z host app[123]: request served in 12ms, status 200, bytes 5123\r\n")
	}
	b64text := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("Hallo zusammen, anbei die Zahlen für Oktober.\n", 40)))
	var b64 strings.Builder
	b64.WriteString(crlf("From: =?utf-8?B?QW5uYSBLw7ZuaWc=?= <anna@example.de>\nTo: team@example.de\nSubject: =?utf-8?Q?Zahlen_f=C3=BCr_Oktober?=\nDate: 3 Nov 2025 17:45 +0100\nMIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n"))
	for s := b64text; len(s) > 0; {
		n := min(76, len(s))
		b64.WriteString(s[:n] + "\r\n")
		s = s[n:]
	}
	var news strings.Builder
	news.WriteString(crlf("From: Shop <news@shop.example>\nTo: customer@example.com\nSubject: Deals of the week\nDate: Fri, 31 Oct 2025 06:00:00 GMT\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n<html><head><style>p{color:red}</style></head><body>\n"))
	for i := 0; i < 60; i++ {
		news.WriteString("<table><tr><td class=3D\"deal\"><a href=3D\"https://shop.example/d\">Deal &amp; more</a></td></tr></table>\r\n")
	}
	news.WriteString("</body></html>\r\n")
	return map[string][]byte{
		"plain":       []byte(msgPlain),
		"alternative": []byte(msgAlternative),
		"mixed":       []byte(msgMixed),
		"nested":      []byte(msgNested),
		"windows1252": []byte(msgWindows1252),
		"shiftjis":    []byte(msgShiftJIS),
		"report10KB":  benchMessage(),
		"base64text":  []byte(b64.String()),
		"htmlonly":    []byte(news.String()),
		"large300KB":  []byte(large.String()),
	}
}

// BenchmarkParseCorpus parses each message of benchCorpus; run it with
// -benchmem: allocations per message are what ingest pays for.
func BenchmarkParseCorpus(b *testing.B) {
	corpus := benchCorpus()
	names := make([]string, 0, len(corpus))
	for name := range corpus {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, mode := range []struct {
		name string
		opts *Options
	}{{"bodies", nil}, {"nobodies", &Options{NoBodies: true}}} {
		for _, name := range names {
			raw := corpus[name]
			b.Run(mode.name+"/"+name, func(b *testing.B) {
				b.SetBytes(int64(len(raw)))
				b.ReportAllocs()
				for b.Loop() {
					Parse(raw, mode.opts)
				}
			})
		}
	}
}
