package mailmsg

import (
	"encoding/base64"
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
