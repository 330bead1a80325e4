package discover

import (
	"strings"
	"testing"
)

// FuzzParseAutoconfig: whatever a server sends, parseAutoconfig returns
// an error or settings that are never plaintext, with a host name that
// checks out and a port in range.
func FuzzParseAutoconfig(f *testing.F) {
	for _, seed := range []string{
		// The shape of Thunderbird's documented example and ISPDB entries.
		`<?xml version="1.0"?><clientConfig version="1.1"><emailProvider id="example.com"><domain>example.com</domain>
<incomingServer type="imap"><hostname>imap.%EMAILDOMAIN%</hostname><port>993</port><socketType>SSL</socketType>
<username>%EMAILLOCALPART%</username><authentication>password-cleartext</authentication></incomingServer>
<incomingServer type="pop3"><hostname>pop.example.com</hostname><port>110</port><socketType>STARTTLS</socketType>
<username>%EMAILADDRESS%</username><authentication>OAuth2</authentication></incomingServer></emailProvider></clientConfig>`,
		`<clientConfig><emailProvider><incomingServer type="imap"><hostname>h</hostname><socketType>plain</socketType></incomingServer></emailProvider></clientConfig>`,
		`<clientConfig/>`,
		`<html>`,
	} {
		f.Add(seed)
	}
	addr := Address{Email: "alice@example.com", Local: "alice", Domain: "example.com"}
	f.Fuzz(func(t *testing.T, doc string) {
		for _, p := range []Protocol{IMAP, POP3} {
			r, err := parseAutoconfig([]byte(doc), addr, p)
			if err != nil {
				continue
			}
			if r.Security != TLS && r.Security != STARTTLS {
				t.Fatalf("security %v from %q", r.Security, doc)
			}
			if r.Port < 1 || r.Port > 65535 || checkHostname(r.Host) != "" || strings.ContainsAny(r.Host, " %") {
				t.Fatalf("host %q port %d from %q", r.Host, r.Port, doc)
			}
			if r.Username == "" || r.Protocol != p {
				t.Fatalf("username %q protocol %v from %q", r.Username, r.Protocol, doc)
			}
		}
	})
}
