package pop3fetcher

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3"
)

func TestHeaderIDIgnoresVolatileFields(t *testing.T) {
	base := "From: a@example.com\r\nSubject: hello\r\n world\r\nMessage-ID: <1@x>\r\n\r\n"
	rewritten := "From: a@example.com\r\nStatus: RO\r\nSubject: hello\r\n world\r\nX-Status: A\r\nX-UID: 17\r\nMessage-ID: <1@x>\r\nX-Keywords: $Label1\r\n  continued\r\n\r\n"
	other := "From: a@example.com\r\nSubject: hello\r\n planet\r\nMessage-ID: <1@x>\r\n\r\n"
	long := "From: a@example.com\r\nSubject: " + strings.Repeat("x", 20000) + "\r\n\r\n"
	id := func(s string) string {
		v, err := headerID(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if id(base) != id(rewritten) {
		t.Error("volatile fields changed the id")
	}
	if id(base) == id(other) {
		t.Error("a different folded Subject gave the same id")
	}
	if id(long) == id(base) || len(id(long)) > 70 || !strings.HasPrefix(id(long), headerIDPrefix) {
		t.Errorf("long header id %q", id(long))
	}
}

func TestStoreUIDL(t *testing.T) {
	for _, uid := range []string{"a", "00000001564a0b3c", strings.Repeat("z", 70)} {
		if got := storeUIDL(uid); got != uid {
			t.Errorf("storeUIDL(%q) = %q", uid, got)
		}
	}
	for _, uid := range []string{strings.Repeat("z", 71), "with space", "tab\there", "ümlaut"} {
		got := storeUIDL(uid)
		if got == uid || len(got) > 70 || !strings.HasPrefix(got, longUIDLPrefix) || got != storeUIDL(uid) {
			t.Errorf("storeUIDL(%q) = %q", uid, got)
		}
	}
}

func TestOccurrences(t *testing.T) {
	o := occurrences{}
	got := []string{o.id("a"), o.id("b"), o.id("a"), o.id("a")}
	if want := []string{"a", "b", "a-2", "a-3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestClassify(t *testing.T) {
	timeout := &net.OpError{Op: "read", Err: timeoutErr{}}
	cases := []struct {
		err       error
		kind      string
		permanent bool
	}{
		{&pop3.Error{Command: "PASS", Message: "no"}, KindAuth, true},
		{&pop3.Error{Command: "PASS", Code: "AUTH"}, KindAuth, true},
		{&pop3.Error{Command: "PASS", Code: "IN-USE"}, KindInUse, false},
		{&pop3.Error{Command: "PASS", Code: "LOGIN-DELAY"}, KindLoginDelay, false},
		{&pop3.Error{Command: "PASS", Code: "SYS/TEMP"}, KindServer, false},
		{&pop3.Error{Command: "PASS", Code: "SYS/PERM"}, KindServer, true},
		{&pop3.Error{Command: "RETR 1", Message: "gone"}, KindServer, true},
		{&pop3.Error{Command: "LIST", Message: "busy"}, KindServer, false},
		{&pop3.Error{Command: "UIDL", Message: "busy"}, KindServer, false},
		{&pop3.Error{Command: "DELE 3", Message: "busy"}, KindServer, false},
		{&pop3.Error{Command: "STAT", Message: "busy"}, KindServer, false},
		{&pop3.Error{Command: "LIST", Code: "SYS/PERM"}, KindServer, true},
		{&pop3.Error{Command: "USER", Message: "unknown"}, KindAuth, true},
		{fmt.Errorf("pop3: dial: %w", &net.DNSError{Err: "no such host", Name: "pop.example", IsNotFound: true}), KindNetwork, false},
		{fmt.Errorf("x: %w", pop3.ErrSTLSUnavailable), KindTLS, true},
		{&pop3.ProtocolError{Reason: "garbage"}, KindProtocol, false},
		{fmt.Errorf("pop3: STAT: %w", timeout), KindTimeout, false},
		{fmt.Errorf("pop3: dial: %w", errors.New("connection refused")), KindNetwork, false},
		{storeErr("ingest", status.Error(codes.Unavailable, "down")), KindStore, false},
		{storeErr("get account secret", status.Error(codes.NotFound, "no account")), KindConfig, true},
		{&configError{"bad security"}, KindConfig, true},
		{fmt.Errorf("pop3: PASS: argument contains CR, LF or NUL: %w", pop3.ErrInvalidArgument), KindConfig, true},
		{context.DeadlineExceeded, KindTimeout, false},
	}
	for _, c := range cases {
		pe := classify("step", c.err)
		if pe.Kind != c.kind || pe.Permanent != c.permanent || !strings.HasPrefix(pe.Reason, "step: ") {
			t.Errorf("classify(%v) = %s permanent %v (%q), want %s permanent %v", c.err, pe.Kind, pe.Permanent, pe.Reason, c.kind, c.permanent)
		}
	}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestCredentials(t *testing.T) {
	pw := &mailbusv1.Account{Username: "u"}
	xo := &mailbusv1.Account{Username: "u", AuthMethod: mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2}
	cases := []struct {
		a    *mailbusv1.Account
		caps pop3.Capabilities
		g    pop3.Greeting
		want pop3.Mechanism
	}{
		{pw, pop3.Capabilities{"SASL": {"PLAIN", "LOGIN"}, "USER": nil}, pop3.Greeting{}, pop3.MechanismPlain},
		{pw, pop3.Capabilities{"USER": nil}, pop3.Greeting{Timestamp: "<1@x>"}, pop3.MechanismUser},
		{pw, pop3.Capabilities{"TOP": nil}, pop3.Greeting{Timestamp: "<1@x>"}, pop3.MechanismAPOP},
		{pw, pop3.Capabilities{}, pop3.Greeting{Timestamp: "<1@x>"}, pop3.MechanismUser},
		{xo, pop3.Capabilities{"SASL": {"PLAIN"}}, pop3.Greeting{}, pop3.MechanismXOAUTH2},
		{xo, pop3.Capabilities{"SASL": {"XOAUTH2"}}, pop3.Greeting{}, pop3.MechanismXOAUTH2},
		{xo, pop3.Capabilities{"SASL": {"OAUTHBEARER"}}, pop3.Greeting{}, pop3.MechanismOAuthBearer},
		{xo, pop3.Capabilities{"SASL": {"PLAIN", "XOAUTH2", "OAUTHBEARER"}}, pop3.Greeting{}, pop3.MechanismOAuthBearer},
		{xo, pop3.Capabilities{}, pop3.Greeting{}, pop3.MechanismXOAUTH2},
	}
	for i, c := range cases {
		creds, mech := credentials(c.a, c.caps, c.g, "secret")
		if mech != c.want {
			t.Errorf("case %d: %s, want %s", i, mech, c.want)
		}
		if (mech == pop3.MechanismXOAUTH2 || mech == pop3.MechanismOAuthBearer) != (creds.Token == "secret") {
			t.Errorf("case %d: credentials %+v", i, creds)
		}
	}
}

func TestJitter(t *testing.T) {
	f := &Fetcher{}
	for range 1000 {
		d := f.jitter(60e9)
		if d < 54e9 || d > 66e9 {
			t.Fatalf("jitter(60s) = %v", d)
		}
	}
}

func TestDerivedID(t *testing.T) {
	var sum [32]byte
	sum[0], sum[7], sum[8] = 0xab, 0x01, 0xff
	if got := derivedID("17", sum); got != "17#ab00000000000001" {
		t.Errorf("derivedID = %q", got)
	}
	for _, id := range []string{"a", strings.Repeat("z", 53), strings.Repeat("z", 54), strings.Repeat("z", 70), storeUIDL(strings.Repeat("y", 100))} {
		d := derivedID(id, sum)
		base, ok := splitDerived(d)
		if len(d) > 70 || !ok || base != derivedBase(id) {
			t.Errorf("derivedID(%d octets) = %q (%d octets), base %q %v", len(id), d, len(d), base, ok)
		}
	}
	for _, id := range []string{"17", "17#ab0000000000000", "17#AB00000000000001", "#ab00000000000001", "17-ab00000000000001"} {
		if _, ok := splitDerived(id); ok {
			t.Errorf("splitDerived(%q) took it for a derived id", id)
		}
	}
}

// TestSameSize: a stored message matches a LIST size when it has that
// size, or two more (the CRLF a server appends to a message without a
// final line break) unless the fetcher trims that CRLF.
func TestSameSize(t *testing.T) {
	for _, tt := range []struct {
		stored, listed int64
		trimming, want bool
	}{
		{100, 100, false, true},
		{102, 100, false, true},
		{100, 100, true, true},
		{102, 100, true, false},
		{101, 100, false, false},
		{100, 102, false, false},
		{98, 100, false, false},
	} {
		if got := sameSize(tt.stored, tt.listed, tt.trimming); got != tt.want {
			t.Errorf("sameSize(%d, %d, %v) = %v", tt.stored, tt.listed, tt.trimming, got)
		}
	}
}
