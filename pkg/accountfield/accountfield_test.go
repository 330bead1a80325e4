package accountfield_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/accountfield"
)

func TestChecks(t *testing.T) {
	for _, c := range []struct {
		what      string
		check     func() error
		wantField string // "" when the value is fine
		wantIn    string
	}{
		{"host name", func() error { return accountfield.CheckHost("imap.example.com") }, "", ""},
		{"host name with final dot", func() error { return accountfield.CheckHost("imap.example.com.") }, "", ""},
		{"single label", func() error { return accountfield.CheckHost("localhost") }, "", ""},
		{"underscore", func() error { return accountfield.CheckHost("mail_1.internal") }, "", ""},
		{"IPv4", func() error { return accountfield.CheckHost("127.0.0.1") }, "", ""},
		{"IPv6", func() error { return accountfield.CheckHost("::1") }, "", ""},
		{"IPv6 with zone", func() error { return accountfield.CheckHost("fe80::1%eth0") }, "", ""},
		{"xn-- name", func() error { return accountfield.CheckHost("xn--bcher-kva.example") }, "", ""},
		{"empty host", func() error { return accountfield.CheckHost("") }, "host", "required"},
		{"CR LF in host", func() error { return accountfield.CheckHost("victim\r\nDELE 1") }, "host", "control character 0x0D at byte 6"},
		{"NUL in host", func() error { return accountfield.CheckHost("a\x00b") }, "host", "0x00"},
		{"DEL in host", func() error { return accountfield.CheckHost("a\x7fb") }, "host", "0x7F"},
		{"space in host", func() error { return accountfield.CheckHost("mail example.com") }, "host", "' '"},
		{"slash in host", func() error { return accountfield.CheckHost("mail/example.com") }, "host", "'/'"},
		{"host:port", func() error { return accountfield.CheckHost("mail.example.com:993") }, "host", "':'"},
		{"bracketed IPv6", func() error { return accountfield.CheckHost("[::1]") }, "host", "'['"},
		{"URL", func() error { return accountfield.CheckHost("imaps://mail.example.com") }, "host", "':'"},
		{"empty label", func() error { return accountfield.CheckHost("mail..example.com") }, "host", "empty label"},
		{"lone dot", func() error { return accountfield.CheckHost(".") }, "host", "no label"},
		{"leading hyphen", func() error { return accountfield.CheckHost("-mail.example.com") }, "host", "'-'"},
		{"long label", func() error { return accountfield.CheckHost(strings.Repeat("a", 64) + ".com") }, "host", "63 bytes"},
		{"long name", func() error { return accountfield.CheckHost(strings.Repeat("abcdefg.", 32) + "com") }, "host", "253 bytes"},
		{"not ASCII", func() error { return accountfield.CheckHost("bücher.example") }, "host", "xn--"},
		{"short IPv4", func() error { return accountfield.CheckHost("127.1") }, "host", "all digits"},
		{"IPv4 with leading zeros", func() error { return accountfield.CheckHost("010.0.0.1") }, "host", "all digits"},
		{"hex IPv4", func() error { return accountfield.CheckHost("0x7f.0.0.1") }, "host", "all digits"},
		{"all-digit single label", func() error { return accountfield.CheckHost("2130706433") }, "host", "all digits"},
		{"digits in the last label", func() error { return accountfield.CheckHost("mail.example.123a") }, "", ""},
		{"digits in other labels", func() error { return accountfield.CheckHost("10.20.example") }, "", ""},
		{"IPv6 with a space in its zone", func() error { return accountfield.CheckHost("fe80::1%eth0 x") }, "host", "zone"},
		{"IPv6 with a slash in its zone", func() error { return accountfield.CheckHost("fe80::1%a/b") }, "host", "zone"},
		{"username", func() error { return accountfield.CheckText("username", "alice@example.com") }, "", ""},
		{"username with space", func() error { return accountfield.CheckText("username", "Alice Smith") }, "", ""},
		{"username not ASCII", func() error { return accountfield.CheckText("username", "jörg") }, "", ""},
		{"CR LF in username", func() error { return accountfield.CheckText("username", "victim\r\nDELE 1") }, "username", "0x0D"},
		{"tab in username", func() error { return accountfield.CheckText("username", "a\tb") }, "username", "0x09"},
		{"ESC in username", func() error { return accountfield.CheckText("username", "a\x1b[2Jb") }, "username", "0x1B"},
		{"name", func() error { return accountfield.CheckName("work 2") }, "", ""},
		{"digits and a letter", func() error { return accountfield.CheckName("2024a") }, "", ""},
		{"all digits", func() error { return accountfield.CheckName("42") }, "name", "all digits"},
		{"leading zero digits", func() error { return accountfield.CheckName("007") }, "name", "all digits"},
		{"CR LF in name", func() error { return accountfield.CheckName("a\r\nb") }, "name", "0x0D"},
		{"ESC in name", func() error { return accountfield.CheckName("\x1b]0;x\x07") }, "name", "0x1B"},
		{"connect", func() error { return accountfield.CheckConnect("127.0.0.1", "alice") }, "", ""},
		{"connect, bad host", func() error { return accountfield.CheckConnect("a b", "alice") }, "host", "' '"},
		{"connect, bad username", func() error { return accountfield.CheckConnect("127.0.0.1", "alice\n") }, "username", "0x0A"},
	} {
		err := c.check()
		if c.wantField == "" {
			if err != nil {
				t.Errorf("%s: %v, want nil", c.what, err)
			}
			continue
		}
		var fe *accountfield.Error
		if !errors.As(err, &fe) {
			t.Errorf("%s: %v, want an *accountfield.Error", c.what, err)
			continue
		}
		if fe.Field != c.wantField || !strings.Contains(fe.Reason, c.wantIn) {
			t.Errorf("%s: field %q reason %q, want field %q and a reason containing %q", c.what, fe.Field, fe.Reason, c.wantField, c.wantIn)
		}
	}
}
