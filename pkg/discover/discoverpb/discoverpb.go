// Package discoverpb converts package discover's results to the API's
// DiscoverSettingsResponse, for the store (which answers the call) and
// the CLI (which answers presets itself, offline).
package discoverpb

import (
	"github.com/mailbus/mailbus/pkg/discover"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Protocol converts an API protocol; unset means IMAP, and ok is false
// for a value that is neither.
func Protocol(p mailbusv1.Protocol) (discover.Protocol, bool) {
	switch p {
	case mailbusv1.Protocol_PROTOCOL_UNSPECIFIED, mailbusv1.Protocol_PROTOCOL_IMAP:
		return discover.IMAP, true
	case mailbusv1.Protocol_PROTOCOL_POP3:
		return discover.POP3, true
	}
	return 0, false
}

var (
	sources = map[discover.Source]mailbusv1.DiscoverySource{
		discover.SourcePreset:     mailbusv1.DiscoverySource_DISCOVERY_SOURCE_PRESET,
		discover.SourceAutoconfig: mailbusv1.DiscoverySource_DISCOVERY_SOURCE_AUTOCONFIG,
		discover.SourceSRV:        mailbusv1.DiscoverySource_DISCOVERY_SOURCE_DNS_SRV,
		discover.SourceMX:         mailbusv1.DiscoverySource_DISCOVERY_SOURCE_MX,
	}
	providers = map[discover.Provider]mailbusv1.Oauth2Provider{
		discover.Google:        mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE,
		discover.Microsoft:     mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_MICROSOFT,
		discover.GenericOAuth2: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC,
	}
)

// Response converts a result: the settings as an Account (protocol,
// host, port, security, username, auth method), with where they came
// from.
func Response(r *discover.Result) *mailbusv1.DiscoverSettingsResponse {
	a := &mailbusv1.Account{
		Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: r.Host, Port: uint32(r.Port),
		Security: mailbusv1.Security_SECURITY_TLS, Username: r.Username, AuthMethod: mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD,
	}
	if r.Protocol == discover.POP3 {
		a.Protocol = mailbusv1.Protocol_PROTOCOL_POP3
	}
	if r.Security == discover.STARTTLS {
		a.Security = mailbusv1.Security_SECURITY_STARTTLS
	}
	if r.Auth == discover.AuthOAuth2 {
		a.AuthMethod = mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2
	}
	resp := &mailbusv1.DiscoverSettingsResponse{
		Account: a, Source: sources[r.Source], SourceDetail: r.Where, Oauth2Provider: providers[r.OAuth2Provider],
		ProviderName: r.Provider, Guess: r.Guess, Note: r.Note,
	}
	for _, s := range r.Skipped {
		resp.Skipped = append(resp.Skipped, s.String())
	}
	return resp
}
