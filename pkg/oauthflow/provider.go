package oauthflow

import (
	"net/url"
	"sort"
)

// Provider is a known authorization server with what a mail client asks
// it for.
type Provider struct {
	// Name is the provider's name in flags and the API: google,
	// microsoft.
	Name string
	Endpoints
	// Scopes are those IMAP and POP3 logins need.
	Scopes []string
	// AuthParams are extra parameters of its authorization request.
	AuthParams url.Values
	// NoDevice says why the device flow is not offered; empty when it is.
	NoDevice string
}

// The built-in providers (their documented endpoints for installed
// applications).
var providers = map[string]Provider{
	"google": {
		Name: "google",
		Endpoints: Endpoints{
			AuthURL:  "https://accounts.google.com/o/oauth2/v2/auth",
			TokenURL: "https://oauth2.googleapis.com/token",
		},
		// The one scope that allows IMAP and POP3 (XOAUTH2).
		Scopes: []string{"https://mail.google.com/"},
		// access_type=offline asks for a refresh token; prompt=consent
		// gets a new one even when the user consented before (Google
		// sends a refresh token only on consent).
		AuthParams: url.Values{"access_type": {"offline"}, "prompt": {"consent"}},
		// Google's device flow (https://oauth2.googleapis.com/device/code)
		// allows a short list of scopes, and the Gmail scope is not one.
		NoDevice: "Google's device flow does not allow the Gmail scope (https://mail.google.com/): use the browser flow (leave out --oauth-device)",
	},
	"microsoft": {
		Name: "microsoft",
		Endpoints: Endpoints{
			AuthURL:       "https://login.microsoftonline.com/common/oauth2/v2.0/authorize",
			TokenURL:      "https://login.microsoftonline.com/common/oauth2/v2.0/token",
			DeviceAuthURL: "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode",
		},
		// offline_access gets a refresh token; the other two allow IMAP
		// and POP3 logins (XOAUTH2) to Outlook and Microsoft 365.
		Scopes: []string{"offline_access", "https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/POP.AccessAsUser.All"},
	},
}

// Lookup returns a built-in provider by name.
func Lookup(name string) (Provider, bool) {
	p, ok := providers[name]
	if ok {
		p.Scopes = append([]string(nil), p.Scopes...)
		vals := url.Values{}
		for k, v := range p.AuthParams {
			vals[k] = append([]string(nil), v...)
		}
		p.AuthParams = vals
	}
	return p, ok
}

// Names returns the names of the built-in providers, sorted.
func Names() []string {
	var names []string
	for n := range providers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
