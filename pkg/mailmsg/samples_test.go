package mailmsg

import "strings"

// crlf turns the LF line endings of a sample into CRLF, as on the wire.
func crlf(s string) string {
	return strings.ReplaceAll(s, "\n", "\r\n")
}

// msgPlain is a single-part reply, CRLF, with a folded Received and
// References.
var msgPlain = crlf(`Return-Path: <alice@example.com>
Received: from mail.example.com (mail.example.com [192.0.2.1])
	by mx.example.net with ESMTPS id 4XyZ
	for <bob@example.net>; Tue, 14 Oct 2025 09:30:00 +0200
From: Alice Example <alice@example.com>
To: Bob <bob@example.net>, "Carol, Jr." <carol@example.org>
Cc: dave@example.org
Subject: Lunch on Friday?
Date: Tue, 14 Oct 2025 09:29:58 +0200
Message-ID: <20251014072958.1234@example.com>
In-Reply-To: <prev-1@example.net>
References: <root-0@example.net>
 <prev-1@example.net>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8; format=flowed
Content-Transfer-Encoding: 7bit

Hi Bob,

are you free for lunch on Friday?

Alice
`)

// msgAlternative is multipart/alternative with quoted-printable parts,
// LF line endings and a preamble.
const msgAlternative = `From: "Shop Team" <news@shop.example>
To: customer@example.com
Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4pyT?=
Date: Wed, 15 Oct 2025 18:00:00 +0000
Message-ID: <alt-1@shop.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="b1_alt"

This is a multi-part message in MIME format.

--b1_alt
Content-Type: text/plain; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

Caf=C3=A9 special: two for one.=20
This line is soft=
 wrapped.

--b1_alt
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: quoted-printable

<html><head><title>Offer</title><style>p{color:red}</style></head><body><p>Caf=
=C3=A9 special: <b>two</b>&nbsp;for one.</p></body></html>

--b1_alt--
`

// pdfBytes and pngBytes are the contents of the attachments of msgMixed.
const (
	pdfBytes = "%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
	pngBytes = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
)

// msgMixed is multipart/mixed with a multipart/related HTML body (with an
// inline image referenced by Content-ID) and a PDF attachment, CRLF,
// ISO-8859-1 throughout.
var msgMixed = crlf(`From: =?ISO-8859-1?Q?Fran=E7ois_Dupont?= <francois@example.fr>
To: team@example.com
Subject: =?iso-8859-1?q?Rapport_financier_=E9t=E9?=
Date: Thu, 16 Oct 2025 10:15:00 +0200
Message-ID: <mixed-1@example.fr>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="----=_Part_0_123.456"

------=_Part_0_123.456
Content-Type: multipart/related; boundary="----=_Part_1_789"; type="multipart/alternative"

------=_Part_1_789
Content-Type: multipart/alternative; boundary="alt-42"

--alt-42
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

Bonjour =E0 tous,
voici le rapport d'=E9t=E9.

--alt-42
Content-Type: text/html; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

<p>Bonjour =E0 tous,<br><img src=3D"cid:logo@example.fr"></p>

--alt-42--

------=_Part_1_789
Content-Type: image/png; name="logo.png"
Content-Transfer-Encoding: base64
Content-ID: <logo@example.fr>

iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAA=
------=_Part_1_789--

------=_Part_0_123.456
Content-Type: application/pdf; name="rapport.pdf"
Content-Disposition: attachment; filename="rapport.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQKJeLjz9MKMSAwIG9iaiA8PCAvVHlwZSAvQ2F0YWxvZyA+PiBlbmRvYmoKdHJhaWxl
ciA8PCAvUm9vdCAxIDAgUiA+PgolJUVPRgo=
------=_Part_0_123.456--
`)

// msgNested forwards two messages as message/rfc822 parts: one
// multipart, one not.
const msgNested = `From: Bob <bob@example.net>
To: Alice <alice@example.com>
Subject: Fwd: two messages
Date: Fri, 17 Oct 2025 08:00:00 -0400
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=outer

--outer
Content-Type: text/plain

See the forwarded messages.
--outer
Content-Type: message/rfc822

From: Carol <carol@example.org>
Subject: Inner one
Content-Type: multipart/alternative; boundary=inner

--inner
Content-Type: text/plain; charset=us-ascii

inner text
--inner
Content-Type: text/html; charset=us-ascii

<p>inner html</p>
--inner--
--outer
Content-Type: message/rfc822
Content-Disposition: attachment; filename="fwd.eml"

From: Dave <dave@example.org>
Subject: Inner two

second inner body
--outer--
`

// msgWindows1252 is an 8-bit windows-1252 body, as Outlook sends it.
var msgWindows1252 = crlf("From: Eve <eve@example.com>\n" +
	"Subject: Quote\n" +
	"Content-Type: text/plain; charset=\"Windows-1252\"\n" +
	"Content-Transfer-Encoding: 8bit\n" +
	"\n" +
	"\x93Smart quotes\x94 cost \x80 5 \x96 na\xefve.\n")

// msgShiftJIS is a Shift_JIS body sent as base64.
var msgShiftJIS = crlf(`From: =?ISO-2022-JP?B?GyRCMnE1RCRON28bKEI=?= <tanaka@example.jp>
Subject: =?Shift_JIS?B?k/qWe4zqgsyDZYNMg1iDZw==?=
Content-Type: text/plain; charset=Shift_JIS
Content-Transfer-Encoding: base64

k/qWe4zqgsyDZYNMg1iDZw==
`)
