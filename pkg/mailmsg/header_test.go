package mailmsg

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func TestSubjectEncodedWords(t *testing.T) {
	tests := []struct {
		name, subject, want string
		err                 string // the expected problem, if any
	}{
		{"utf-8 B", "=?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4pyT?=", "Grüße aus Köln ✓", ""},
		{"iso-8859-1 Q", "=?ISO-8859-1?Q?Caf=E9_cr=E8me?=", "Café crème", ""},
		{"iso-2022-jp", "=?ISO-2022-JP?B?GyRCMnE1RCRON28bKEI=?=", "会議の件", ""},
		{"koi8-r", "=?KOI8-R?B?8NLJ18XULCDNydI=?=", "Привет, мир", ""},
		{"gb2312", "=?GB2312?B?xOO6w8rAvec=?=", "你好世界", ""},
		{"shift_jis", "=?Shift_JIS?B?k/qWe4zqgsyDZYNMg1iDZw==?=", "日本語のテキスト", ""},
		{"windows-1252", "=?windows-1252?Q?=93quoted=94_=80?=", "“quoted” €", ""},
		{"iso-8859-15", "=?iso-8859-15?q?=A4uro?=", "€uro", ""},
		{"language suffix", "=?utf-8*en?q?hello?=", "hello", ""},
		{"adjacent words join", "Re: =?utf-8?q?a?= =?utf-8?q?b?=  tail", "Re: ab  tail", ""},
		{"folded words join", "=?utf-8?q?one?=\r\n =?utf-8?q?_two?=", "one two", ""},
		{"character split across words", "=?UTF-8?Q?caf=C3?= =?UTF-8?Q?=A9?=", "café", ""},
		{"B without padding", "=?UTF-8?B?w6k?=", "é", ""},
		{"lower case q, no space before", "Price:=?utf-8?q?_5=E2=82=AC?=", "Price: 5€", ""},
		{"not an encoded word", "2 =? 3 and =?x?", "2 =? 3 and =?x?", ""},
		{"unknown charset keeps bytes", "=?x-klingon?Q?qapla=27?=", "qapla'", `message: subject: unknown charset "x-klingon"`},
		{"raw utf-8 header", "Größe", "Größe", ""},
		{"raw latin-1 header", "Gr\xf6\xdfe", "Größe", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "Subject: " + tt.subject + "\r\n\r\nbody\r\n"
			p := Parse([]byte(raw), nil)
			if p.Envelope.GetSubject() != tt.want {
				t.Errorf("Subject = %q, want %q", p.Envelope.GetSubject(), tt.want)
			}
			var want []string
			if tt.err != "" {
				want = []string{tt.err}
			}
			wantErrors(t, p.Errors, want...)
		})
	}
}

func TestFilename(t *testing.T) {
	tests := []struct {
		name, header, want string
	}{
		{"rfc 2231 continuations",
			"Content-Disposition: attachment;\r\n filename*0*=utf-8''%E2%82%AC%20rates;\r\n filename*1*=%20Q3.pdf",
			"€ rates Q3.pdf"},
		{"rfc 2231 iso-8859-1",
			"Content-Disposition: attachment; filename*=iso-8859-1'fr'caf%E9.txt",
			"café.txt"},
		{"rfc 2231 plain continuations",
			"Content-Disposition: attachment; filename*0=\"long name \"; filename*1=\"part two.doc\"",
			"long name part two.doc"},
		{"extended wins over plain",
			"Content-Disposition: attachment; filename=\"fallback.txt\"; filename*=UTF-8''r%C3%A9el.txt",
			"réel.txt"},
		{"encoded word in quotes",
			"Content-Disposition: attachment; filename=\"=?UTF-8?B?w6l0w6kucGRm?=\"",
			"été.pdf"},
		{"name on Content-Type",
			"Content-Type: application/octet-stream; name=\"data.bin\"",
			"data.bin"},
		{"unquoted with spaces",
			"Content-Disposition: attachment; filename=my report.pdf",
			"my report.pdf"},
		{"raw utf-8",
			"Content-Disposition: attachment; filename=\"Übersicht.xlsx\"",
			"Übersicht.xlsx"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := "Subject: file\r\n" + tt.header + "\r\n\r\ndata\r\n"
			p := Parse([]byte(raw), nil)
			if got := p.Structure.GetFilename(); got != tt.want {
				t.Errorf("Filename = %q, want %q", got, tt.want)
			}
			if len(p.Attachments) != 1 || p.Attachments[0].GetFilename() != tt.want || p.Attachments[0].GetPartId() != "1" {
				t.Errorf("Attachments = %v, want one, part 1, %q", p.Attachments, tt.want)
			}
			wantErrors(t, p.Errors)
		})
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct {
		name, to string
		want     []*mailbusv1.Address
		errs     []string
	}{
		{"simple list", "a@example.com, B <b@example.com>",
			[]*mailbusv1.Address{addr("", "a@example.com"), addr("B", "b@example.com")}, nil},
		{"group", "Team: a@example.com, b@example.com;, c@example.com",
			[]*mailbusv1.Address{addr("", "a@example.com"), addr("", "b@example.com"), addr("", "c@example.com")}, nil},
		{"empty group", "undisclosed-recipients:;", []*mailbusv1.Address{}, nil},
		{"encoded word in quoted name", `"=?utf-8?q?J=C3=BCrgen?=" <j@example.de>`,
			[]*mailbusv1.Address{addr("Jürgen", "j@example.de")}, nil},
		{"encoded word in atom name", `=?utf-8?q?J=C3=BCrgen_M=C3=BCller?= <j@example.de>`,
			[]*mailbusv1.Address{addr("Jürgen Müller", "j@example.de")}, nil},
		{"raw latin-1 name", "J\xfcrgen <j@example.de>",
			[]*mailbusv1.Address{addr("Jürgen", "j@example.de")}, nil},
		{"unquoted comma and dot in name", "Smith, J. <j@example.com>; ok@example.com",
			[]*mailbusv1.Address{addr("Smith", ""), addr("J.", "j@example.com"), addr("", "ok@example.com")},
			[]string{"message: to: mail: missing '@' or angle-addr; read leniently"}},
		{"junk", "not an address, x@y",
			[]*mailbusv1.Address{addr("not an address", ""), addr("", "x@y")},
			[]string{"message: to: mail: no angle-addr; read leniently"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parse([]byte("To: "+tt.to+"\r\n\r\n"), nil)
			got := p.Envelope.GetTo()
			if len(got) != len(tt.want) {
				t.Fatalf("To = %v, want %v", got, tt.want)
			}
			for i := range got {
				if !proto.Equal(got[i], tt.want[i]) {
					t.Errorf("To[%d] = %v, want %v", i, got[i], tt.want[i])
				}
			}
			wantErrors(t, p.Errors, tt.errs...)
		})
	}
}

func TestDateAndIDs(t *testing.T) {
	tests := []struct {
		name, header string
		want         *mailbusv1.Envelope
		errs         []string
	}{
		{"date with comment", "Date: Mon, 6 Oct 2025 14:05:09 -0700 (PDT)",
			&mailbusv1.Envelope{Date: ts("2025-10-06T21:05:09Z")}, nil},
		{"date obsolete zone", "Date: 6 Oct 2025 14:05:09 EST",
			&mailbusv1.Envelope{Date: ts("2025-10-06T19:05:09Z")}, nil},
		{"date without seconds", "Date: Mon, 6 Oct 2025 14:05 +0000",
			&mailbusv1.Envelope{Date: ts("2025-10-06T14:05:00Z")}, nil},
		{"asctime date", "Date: Mon Oct  6 14:05:09 2025",
			&mailbusv1.Envelope{Date: ts("2025-10-06T14:05:09Z")}, nil},
		{"bad date", "Date: yesterday, about noon",
			&mailbusv1.Envelope{},
			[]string{`message: date: "yesterday, about noon": mail: header could not be parsed`}},
		{"ids", "Message-ID:   <a.b@c>  \r\nIn-Reply-To: Your message of Monday <x@y>\r\nReferences: <1@h>,<2@h>\r\n\t<3@h>",
			&mailbusv1.Envelope{MessageId: "a.b@c", InReplyTo: []string{"x@y"}, References: []string{"1@h", "2@h", "3@h"}}, nil},
		{"id without brackets", "Message-ID: bare-id@host",
			&mailbusv1.Envelope{MessageId: "bare-id@host"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Parse([]byte(tt.header+"\r\n\r\n"), nil)
			if !proto.Equal(p.Envelope, tt.want) {
				t.Errorf("Envelope = %v, want %v", p.Envelope, tt.want)
			}
			wantErrors(t, p.Errors, tt.errs...)
		})
	}
}

func TestCharsets(t *testing.T) {
	tests := []struct {
		charset string
		in      string
		want    string
		err     string
	}{
		{"utf-8", "Grüße", "Grüße", ""},
		{"UTF8", "Grüße", "Grüße", ""},
		{"", "plain", "plain", ""},
		{"us-ascii", "caf\xe9", "café", ""},
		{"iso-8859-1", "caf\xe9", "café", ""},
		{"latin1", "caf\xe9", "café", ""},
		{"iso-8859-2", "\xb1", "ą", ""},
		{"iso-8859-5", "\xbf\xe0\xd8\xd2\xd5\xe2", "Привет", ""},
		{"windows-1251", "\xcf\xf0\xe8\xe2\xe5\xf2", "Привет", ""},
		{"koi8-r", "\xf0\xd2\xc9\xd7\xc5\xd4", "Привет", ""},
		{"gbk", "\xc4\xe3\xba\xc3", "你好", ""},
		{"big5", "\xa7\x41\xa6\x6e", "你好", ""},
		{"euc-kr", "\xbe\xc8\xb3\xe7", "안녕", ""},
		{"euc-jp", "\xc6\xfc\xcb\xdc", "日本", ""},
		{"iso-2022-jp", "\x1b$BF|K\\\x1b(B", "日本", ""},
		{"\"utf-8\"", "ok", "ok", ""},
		{"utf-8", "bad \xff", "bad \uFFFD", "invalid utf-8"},
		{"x-unknown", "keep \xff", "keep \uFFFD", `unknown charset "x-unknown"`},
	}
	for _, tt := range tests {
		t.Run(tt.charset, func(t *testing.T) {
			got, err := toUTF8(tt.charset, []byte(tt.in))
			if got != tt.want {
				t.Errorf("toUTF8(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if errStr(err) != tt.err {
				t.Errorf("error = %v, want %q", err, tt.err)
			}
		})
	}
}

// errStr returns the message of err, "" for nil.
func errStr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestTransferDecoding(t *testing.T) {
	tests := []struct {
		cte, in, want, err string
	}{
		{"base64", "SGVs\r\nbG8=\r\n", "Hello", ""},
		{"base64", "SGVsbG8", "Hello", ""},
		{"base64", "SGVs bG8=SGk=", "HelloHi", ""},
		{"base64", "SGV*sbG8=", "Hello", "bad base64: byte 0x2a"},
		{"base64", "SGVsbG8gV", "Hello ", "truncated base64"},
		{"quoted-printable", "a=3Db=\r\nc  \r\nd", "a=bc\r\nd", ""},
		{"quoted-printable", "100% =ZZ", "100% =ZZ", `bad quoted-printable: "=ZZ"`},
		{"quoted-printable", "lower =c3=a9", "lower é", ""},
		{"8bit", "as is", "as is", ""},
		{"x-uuencode", "begin 644", "begin 644", `unknown transfer encoding "x-uuencode"; kept as is`},
	}
	for _, tt := range tests {
		t.Run(tt.cte+" "+strings.ReplaceAll(tt.in, "\r\n", "|"), func(t *testing.T) {
			got, err := decodeTransfer(tt.cte, []byte(tt.in))
			if string(got) != tt.want {
				t.Errorf("decodeTransfer = %q, want %q", got, tt.want)
			}
			if errStr(err) != tt.err {
				t.Errorf("error = %v, want %q", err, tt.err)
			}
		})
	}
}
