package pop3

import (
	"strings"
	"testing"
	"time"
)

func TestParseStatus(t *testing.T) {
	tests := []struct {
		line       string
		ok         bool
		kind       statusKind
		code, text string
	}{
		{"+OK", true, statusOK, "", ""},
		{"+OK 2 320", true, statusOK, "", "2 320"},
		{"+ok lower case", true, statusOK, "", "lower case"},
		{"-ERR", true, statusErr, "", ""},
		{"-ERR no such message", true, statusErr, "", "no such message"},
		{"-ERR [IN-USE] maildrop locked", true, statusErr, "IN-USE", "maildrop locked"},
		{"-ERR [sys/temp] later", true, statusErr, "SYS/TEMP", "later"},
		{"-ERR [SYS/PERM]", true, statusErr, "SYS/PERM", ""},
		{"-ERR [LOGIN-DELAY] wait", true, statusErr, "LOGIN-DELAY", "wait"},
		{"-ERR [AUTH] bad", true, statusErr, "AUTH", "bad"},
		{"-ERR [not a code] x", true, statusErr, "", "[not a code] x"},
		{"-ERR [] x", true, statusErr, "", "[] x"},
		{"-ERR [SYS//TEMP] x", true, statusErr, "", "[SYS//TEMP] x"},
		{"-ERR [unterminated", true, statusErr, "", "[unterminated"},
		{"+", true, statusCont, "", ""},
		{"+ eyJzdGF0dXMiOiI0MDEifQ==", true, statusCont, "", "eyJzdGF0dXMiOiI0MDEifQ=="},
		{"", false, 0, "", ""},
		{"+OKAY", false, 0, "", ""},
		{"-ERROR", false, 0, "", ""},
		{"hello", false, 0, "", ""},
		{"+-", false, 0, "", ""},
	}
	for _, tt := range tests {
		st, ok := parseStatus([]byte(tt.line))
		if ok != tt.ok {
			t.Errorf("%q: ok %v, want %v", tt.line, ok, tt.ok)
			continue
		}
		if ok && (st.kind != tt.kind || st.code != tt.code || st.text != tt.text) {
			t.Errorf("%q: got %+v, want kind %v code %q text %q", tt.line, st, tt.kind, tt.code, tt.text)
		}
	}
}

func TestCapabilities(t *testing.T) {
	caps := Capabilities{}
	for _, l := range []string{"TOP", "user", "SASL PLAIN xoauth2", "LOGIN-DELAY 900 USER", "PIPELINING", ""} {
		if tag, args, ok := parseCapaLine([]byte(l)); ok {
			caps[tag] = args
		}
	}
	if !caps.Has("USER") || !caps.Has("pipelining") || caps.Has("STLS") {
		t.Errorf("Has: %v", caps)
	}
	if !caps.HasSASL("XOAUTH2") || !caps.HasSASL("plain") || caps.HasSASL("CRAM-MD5") {
		t.Errorf("SASL: %v", caps.SASL())
	}
	d, perUser, ok := caps.LoginDelay()
	if !ok || d != 900*time.Second || !perUser {
		t.Errorf("LoginDelay = %v %v %v", d, perUser, ok)
	}
	for _, args := range [][]string{{}, {"-1"}, {"x"}, {"99999999999999999999"}} {
		if _, _, ok := (Capabilities{"LOGIN-DELAY": args}).LoginDelay(); ok {
			t.Errorf("LoginDelay(%q) ok", args)
		}
	}
	if d, perUser, ok := (Capabilities{"LOGIN-DELAY": {"0"}}).LoginDelay(); !ok || d != 0 || perUser {
		t.Errorf("LOGIN-DELAY 0: %v %v %v", d, perUser, ok)
	}
}

func TestParseLines(t *testing.T) {
	if e, ok := parseUIDLLine("1 whqtswO00WBw418f9t5JxYwZ"); !ok || e.Number != 1 || e.UID != "whqtswO00WBw418f9t5JxYwZ" {
		t.Errorf("UIDL: %v %v", e, ok)
	}
	for _, bad := range []string{"", "1", "x abc", "0 abc", "-1 abc", "1 a\x01b"} {
		if _, ok := parseUIDLLine(bad); ok {
			t.Errorf("UIDL %q accepted", bad)
		}
	}
	if e, ok := parseListLine("2 200 extra"); !ok || e.Number != 2 || e.Size != 200 {
		t.Errorf("LIST: %v %v", e, ok)
	}
	for _, bad := range []string{"", "1", "1 -5", "0 5", "a b"} {
		if _, ok := parseListLine(bad); ok {
			t.Errorf("LIST %q accepted", bad)
		}
	}
	if ts := parseTimestamp("POP3 server ready <1896.697170952@dbc.mtview.ca.us>"); ts != "<1896.697170952@dbc.mtview.ca.us>" {
		t.Errorf("timestamp %q", ts)
	}
	for _, g := range []string{"ready", "ready <no-at>", "<a@b", "< a@b>"} {
		if ts := parseTimestamp(g); ts != "" {
			t.Errorf("timestamp in %q: %q", g, ts)
		}
	}
}

// FuzzResponseLine feeds arbitrary lines to the status, CAPA, LIST, UIDL
// and greeting parsers: none may panic, and what they accept must be
// well-formed.
func FuzzResponseLine(f *testing.F) {
	for _, s := range []string{
		"+OK POP3 server ready <1896.697170952@dbc.mtview.ca.us>",
		"+OK 2 320", "-ERR [IN-USE] locked", "-ERR [SYS/TEMP/X] x", "+ eyJ9",
		"LOGIN-DELAY 900 USER", "SASL PLAIN XOAUTH2", "1 whqtswO00WBw418f9t5JxYwZ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		if st, ok := parseStatus(line); ok {
			if st.code != "" && (!validCode([]byte(st.code)) || st.code != strings.ToUpper(st.code)) {
				t.Fatalf("%q: bad code %q", line, st.code)
			}
			if st.kind != statusCont && !hasPrefixFold(line, "+OK") && !hasPrefixFold(line, "-ERR") {
				t.Fatalf("%q accepted as %v", line, st.kind)
			}
			_ = st.toError("X").Error()
			_ = st.toError("X").Temporary()
		}
		if tag, args, ok := parseCapaLine(line); ok {
			if tag == "" || strings.ContainsAny(tag, " \t") {
				t.Fatalf("%q: bad tag %q", line, tag)
			}
			if d, _, ok := (Capabilities{tag: args}).LoginDelay(); ok && d < 0 {
				t.Fatalf("%q: negative delay %v", line, d)
			}
		}
		if e, ok := parseUIDLLine(string(line)); ok && (e.Number < 1 || e.UID == "") {
			t.Fatalf("%q: bad UIDL entry %+v", line, e)
		}
		if e, ok := parseListLine(string(line)); ok && (e.Number < 1 || e.Size < 0) {
			t.Fatalf("%q: bad LIST entry %+v", line, e)
		}
		if ts := parseTimestamp(string(line)); ts != "" && (ts[0] != '<' || ts[len(ts)-1] != '>') {
			t.Fatalf("%q: bad timestamp %q", line, ts)
		}
		_ = printable(line, 80)
	})
}
