package discover

import (
	"fmt"
	"strings"
)

// preset is a large provider's settings, built in so that its users need
// no network lookup (and so that a provider whose autoconfig or DNS is
// missing or wrong still works).
type preset struct {
	name string
	// domains are the address domains of the provider's own mailboxes.
	domains []string
	// mx are MX host suffixes of domains hosted by the provider (Google
	// Workspace, Microsoft 365): an MX answer ending in one of them gives
	// this preset's settings.
	mx []string
	// imapHost and pop3Host, on the implicit TLS ports; pop3Host empty:
	// no POP3.
	imapHost, pop3Host string
	// localPartLogin: the login is the part before the @ (web.de).
	localPartLogin bool
	// oauth is the provider's OAuth 2.0 server, when mailbus knows it.
	oauth Provider
	// note is advice on the login.
	note string
}

// presets are the built-in providers. Hosts and logins follow the
// providers' own help pages (and agree with Thunderbird's ISPDB).
var presets = []preset{
	{
		name: "Gmail", domains: []string{"gmail.com", "googlemail.com"},
		mx:       []string{"google.com", "googlemail.com"},
		imapHost: "imap.gmail.com", pop3Host: "pop.gmail.com", oauth: Google,
		note: "Google takes OAuth 2.0 (--oauth google), or an app password with 2-step verification on",
	},
	{
		name: "Outlook.com / Microsoft 365",
		domains: []string{"outlook.com", "hotmail.com", "live.com", "msn.com", "passport.com",
			"outlook.de", "outlook.fr", "outlook.es", "outlook.it", "outlook.jp", "outlook.co.uk",
			"hotmail.co.uk", "hotmail.de", "hotmail.fr", "hotmail.es", "hotmail.it",
			"live.co.uk", "live.de", "live.fr", "live.it", "live.nl"},
		mx:       []string{"mail.protection.outlook.com", "olc.protection.outlook.com"},
		imapHost: "outlook.office365.com", pop3Host: "outlook.office365.com",
		oauth: Microsoft,
		note:  "Microsoft takes only OAuth 2.0 for IMAP and POP3 (--oauth microsoft); passwords are switched off",
	},
	{
		name: "Yahoo Mail", domains: []string{"yahoo.com", "ymail.com", "rocketmail.com", "yahoo.co.uk", "yahoo.de", "yahoo.fr", "yahoo.es", "yahoo.it", "yahoo.ca", "yahoo.co.jp"},
		mx:       []string{"yahoodns.net"},
		imapHost: "imap.mail.yahoo.com", pop3Host: "pop.mail.yahoo.com",
		note: "Yahoo takes an app password (Account security, Generate app password), not the account password",
	},
	{
		// AOL's MX is Yahoo's (yahoodns.net), but its servers are its
		// own: matched by domain before any MX.
		name: "AOL Mail", domains: []string{"aol.com", "aim.com", "aol.co.uk", "aol.de", "aol.fr"},
		imapHost: "imap.aol.com", pop3Host: "pop.aol.com",
		note: "AOL takes an app password (Account security, Generate app password), not the account password",
	},
	{
		name: "iCloud Mail", domains: []string{"icloud.com", "me.com", "mac.com"},
		imapHost: "imap.mail.me.com",
		note:     "Apple takes an app-specific password (appleid.apple.com, Sign-In and Security)",
	},
	{
		name: "Fastmail", domains: []string{"fastmail.com", "fastmail.fm", "fastmail.net", "fastmail.org", "fastmail.to", "fastmail.us", "messagingengine.com"},
		mx:       []string{"messagingengine.com"},
		imapHost: "imap.fastmail.com", pop3Host: "pop.fastmail.com",
		note: "Fastmail takes an app password (Settings, Privacy & Security, App passwords)",
	},
	{
		name: "GMX", domains: []string{"gmx.net", "gmx.de", "gmx.at", "gmx.ch", "gmx.eu", "gmx.biz", "gmx.org", "gmx.info"},
		imapHost: "imap.gmx.net", pop3Host: "pop.gmx.net",
		note: "GMX serves IMAP and POP3 once they are allowed in the mailbox's settings (POP3 & IMAP)",
	},
	{
		name: "GMX (international)", domains: []string{"gmx.com", "gmx.us", "gmx.co.uk", "gmx.fr", "gmx.es", "gmx.it"},
		imapHost: "imap.gmx.com", pop3Host: "pop.gmx.com",
		note: "GMX serves IMAP and POP3 once they are allowed in the mailbox's settings (POP3 & IMAP)",
	},
	{
		name: "WEB.DE", domains: []string{"web.de"},
		imapHost: "imap.web.de", pop3Host: "pop3.web.de", localPartLogin: true,
		note: "WEB.DE serves IMAP and POP3 once they are allowed in the mailbox's settings (POP3 & IMAP)",
	},
	{
		name: "Mail.ru", domains: []string{"mail.ru", "inbox.ru", "list.ru", "bk.ru", "internet.ru"},
		imapHost: "imap.mail.ru", pop3Host: "pop.mail.ru",
		note: "Mail.ru takes a password for external apps (Settings, Security)",
	},
	{
		name: "Yandex Mail", domains: []string{"yandex.ru", "yandex.com", "yandex.by", "yandex.kz", "yandex.ua", "ya.ru", "narod.ru"},
		mx:       []string{"mx.yandex.net", "mx.yandex.ru"},
		imapHost: "imap.yandex.com", pop3Host: "pop.yandex.com",
		note: "Yandex takes an app password, once IMAP or POP3 is enabled in Mail settings",
	},
	{
		name: "Zoho Mail", domains: []string{"zoho.com", "zohomail.com"},
		imapHost: "imap.zoho.com", pop3Host: "pop.zoho.com",
		note: "Zoho takes an app-specific password when two-factor authentication is on",
	},
	{
		name: "Zoho Mail (EU)", domains: []string{"zoho.eu", "zohomail.eu"},
		imapHost: "imap.zoho.eu", pop3Host: "pop.zoho.eu",
		note: "Zoho takes an app-specific password when two-factor authentication is on",
	},
	// Zoho's hosted domains log in on its "pro" servers.
	{
		name: "Zoho Mail (own domain)", mx: []string{"zoho.com"},
		imapHost: "imappro.zoho.com", pop3Host: "poppro.zoho.com",
		note: "Zoho takes an app-specific password when two-factor authentication is on",
	},
	{
		name: "Zoho Mail (own domain, EU)", mx: []string{"zoho.eu"},
		imapHost: "imappro.zoho.eu", pop3Host: "poppro.zoho.eu",
		note: "Zoho takes an app-specific password when two-factor authentication is on",
	},
}

// Preset returns a built-in provider's settings for the address, with no
// network lookup: ErrNoPreset when the domain is not one of theirs,
// ErrNotOffered when the provider has no such service (iCloud: no POP3),
// ErrInvalidAddress for a bad address.
func Preset(email string, p Protocol) (*Result, error) {
	addr, err := ParseAddress(email)
	if err != nil {
		return nil, err
	}
	return presetResult(addr, p)
}

func presetResult(addr Address, p Protocol) (*Result, error) {
	for i := range presets {
		for _, d := range presets[i].domains {
			if addr.Domain == d {
				return presets[i].result(addr, p, SourcePreset, "built-in preset "+presets[i].name)
			}
		}
	}
	return nil, ErrNoPreset
}

// presetForMX returns the preset whose provider hosts the MX host, or nil.
func presetForMX(mxHost string) *preset {
	for i := range presets {
		for _, suffix := range presets[i].mx {
			if mxHost == suffix || strings.HasSuffix(mxHost, "."+suffix) {
				return &presets[i]
			}
		}
	}
	return nil
}

// result makes the preset's settings for the address.
func (ps *preset) result(addr Address, p Protocol, src Source, where string) (*Result, error) {
	host := ps.imapHost
	if p == POP3 {
		host = ps.pop3Host
	}
	if host == "" {
		return nil, fmt.Errorf("%s offers no %s (use IMAP): %w", ps.name, strings.ToUpper(p.String()), ErrNotOffered)
	}
	r := &Result{
		Protocol: p, Host: host, Port: defaultPort(p, TLS), Security: TLS,
		Username: addr.Email, Auth: AuthPassword, OAuth2Provider: ps.oauth,
		Source: src, Where: where, Provider: ps.name, Note: ps.note,
	}
	if ps.localPartLogin {
		r.Username = addr.Local
	}
	if ps.oauth != NoProvider {
		r.Auth = AuthOAuth2
	}
	return r, nil
}
