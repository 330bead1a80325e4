package db

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/accountfield"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// fieldErr fails unless err is an invalid-argument error naming field.
func fieldErr(t *testing.T, err error, field string) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != field || fe.Reason == "" {
		t.Fatalf("error %v (%T) is not an invalid-argument error for %s", err, err, field)
	}
}

// FuzzPageToken: any page token from a client decodes or is refused as
// malformed; a token the store made decodes to what it encoded.
func FuzzPageToken(f *testing.F) {
	f.Add("MTcwMDAwMDAwMC40Mg", int64(1700000000), int64(42))
	f.Add("", int64(0), int64(0))
	f.Add("!!!", int64(-1), int64(-9223372036854775808))
	f.Add("MQ", int64(9223372036854775807), int64(1))
	f.Add("MS4yLjM", int64(1), int64(2))
	f.Add("KzEuLTA", int64(-62135596800), int64(7))
	f.Fuzz(func(t *testing.T, tok string, date, id int64) {
		if _, _, err := decodePageToken(tok); err != nil {
			fieldErr(t, err, "page_token")
		}
		d, n, err := decodePageToken(encodePageToken(date, id))
		if err != nil || d != date || n != id {
			t.Fatalf("page token of (%d, %d) decodes to (%d, %d), %v", date, id, d, n, err)
		}
	})
}

// FuzzParseID: an id from a client is a positive decimal int64 or an
// invalid-argument error naming the field; a parsed id formats back.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"1", "0", "-5", "+7", "007", "9223372036854775808", "", "1e3", " 1", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseID("message_id", s)
		if err != nil {
			fieldErr(t, err, "message_id")
			return
		}
		if id <= 0 {
			t.Fatalf("parseID(%q) = %d", s, id)
		}
		if again, err := parseID("message_id", formatID(id)); err != nil || again != id {
			t.Fatalf("parseID(formatID(%d)) = %d, %v", id, again, err)
		}
	})
}

// FuzzValidateMailboxName: a name is accepted only if it is non-empty,
// valid UTF-8, at most 1000 bytes, without NUL, CR, LF or LIST wildcards;
// anything else is an invalid-argument error naming the field.
func FuzzValidateMailboxName(f *testing.F) {
	for _, s := range []string{"INBOX", "Archive/2024", "Ärger", "a*b", "50%", "a\r\nb", "\xff", "", strings.Repeat("x", 1001), "a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := ValidateMailboxName("name", name)
		ok := name != "" && len(name) <= 1000 && utf8.ValidString(name) && !strings.ContainsAny(name, "\x00\r\n*%")
		if ok != (err == nil) {
			t.Fatalf("ValidateMailboxName(%q) = %v", name, err)
		}
		if err != nil {
			fieldErr(t, err, "name")
		}
	})
}

// FuzzValidateAccount: any account configuration is accepted with its
// defaults filled, or refused with an invalid-argument error naming an
// account field; an accepted account passes the checks the fetchers make
// before they connect (accountfield) and validates again unchanged.
func FuzzValidateAccount(f *testing.F) {
	f.Add("work", int32(1), "imap.example.com", uint32(993), int32(1), "alice", int32(0), int32(0), int64(60), "INBOX\x01Lists/*", "Trash")
	f.Add(" ", int32(2), "pop.example.com", uint32(995), int32(1), "bob", int32(0), int32(2), int64(0), "", "")
	f.Add("a\nb", int32(9), "bad host", uint32(70000), int32(7), "", int32(5), int32(9), int64(-1), "\x00", "")
	f.Add("pop", int32(2), "h", uint32(110), int32(3), "u", int32(2), int32(0), int64(1), "Archive", "")
	f.Add("42", int32(2), "pop.example.com:995", uint32(995), int32(1), "victim\r\nDELE 1", int32(0), int32(0), int64(0), "", "")
	f.Fuzz(func(t *testing.T, name string, proto int32, host string, port uint32, security int32, user string,
		auth, pop3 int32, pollSeconds int64, include, exclude string) {
		a := &mailbusv1.Account{
			Name: name, Protocol: mailbusv1.Protocol(proto), Host: host, Port: port,
			Security: mailbusv1.Security(security), Username: user, AuthMethod: mailbusv1.AuthMethod(auth),
			Pop3Mode: mailbusv1.Pop3Mode(pop3),
		}
		if pollSeconds != 0 {
			a.PollInterval = durationpb.New(0)
			a.PollInterval.Seconds = pollSeconds
		}
		if include != "" {
			a.FolderInclude = strings.Split(include, "\x01")
		}
		if exclude != "" {
			a.FolderExclude = strings.Split(exclude, "\x01")
		}
		err := ValidateAccount(a)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || !strings.HasPrefix(fe.Field, "account.") {
				t.Fatalf("ValidateAccount error %v is not an invalid-argument error for an account field", err)
			}
			return
		}
		if a.Name == "" || a.Port == 0 || a.Port > 65535 || a.PollInterval.AsDuration().Seconds() < 1 ||
			a.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_UNSPECIFIED ||
			accountfield.CheckName(a.Name) != nil || accountfield.CheckConnect(a.Host, a.Username) != nil {
			t.Fatalf("ValidateAccount accepted %v", a)
		}
		if err := ValidateAccount(a); err != nil {
			t.Fatalf("an accepted account is refused on a second validation: %v", err)
		}
	})
}
