// Package discover finds the IMAP or POP3 server of an email address, as
// mail clients do (decision 0038). It tries, in this order:
//
//  1. built-in presets for the large providers (Gmail, Outlook and
//     Microsoft 365, Yahoo, iCloud, Fastmail, GMX, web.de, mail.ru,
//     Yandex, Zoho), with their OAuth 2.0 provider where mailbus knows
//     one (Google, Microsoft); no network;
//  2. Thunderbird autoconfig over HTTPS only:
//     https://autoconfig.<domain>/mail/config-v1.1.xml, then
//     https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml;
//  3. DNS SRV records (RFC 6186): _imaps._tcp then _imap._tcp, or
//     _pop3s._tcp then _pop3._tcp;
//  4. the domain's MX host: the settings of a known provider when the MX
//     is one of theirs (Google Workspace, Microsoft 365, ...), else the
//     MX host itself with the implicit TLS port, labelled a guess.
//
// Implicit TLS is preferred to STARTTLS; plaintext is never chosen. A
// source that fails (an unreachable or malformed autoconfig file, no SRV
// records) is noted in the Result's Skipped list and the next is tried;
// only an SRV record whose target is "." for both services (the domain
// says it offers no such service) or a preset provider without the
// protocol (iCloud has no POP3) ends the search early with ErrNotOffered.
//
// Every lookup goes through the Config's HTTP client and resolver, under
// the caller's context and a per-lookup timeout, so tests run it against
// a local autoconfig server and a local DNS server (package
// discovertest).
package discover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"
)

// Protocol is the mail access protocol looked for.
type Protocol int

// The protocols.
const (
	IMAP Protocol = iota + 1
	POP3
)

// String names the protocol as the CLI's --protocol flag does.
func (p Protocol) String() string {
	switch p {
	case IMAP:
		return "imap"
	case POP3:
		return "pop3"
	}
	return fmt.Sprintf("Protocol(%d)", int(p))
}

// Security is the transport security of the settings found; there is no
// plaintext value because discovery never chooses plaintext.
type Security int

// The securities, best first.
const (
	TLS Security = iota + 1
	STARTTLS
)

// String names the security as the CLI's --security flag does.
func (s Security) String() string {
	switch s {
	case TLS:
		return "tls"
	case STARTTLS:
		return "starttls"
	}
	return fmt.Sprintf("Security(%d)", int(s))
}

// Auth is how the server wants the login made.
type Auth int

// The authentication methods.
const (
	// AuthPassword is a password (or an app password).
	AuthPassword Auth = iota + 1
	// AuthOAuth2 is an OAuth 2.0 access token (SASL XOAUTH2/OAUTHBEARER).
	AuthOAuth2
)

// String names the method.
func (a Auth) String() string {
	switch a {
	case AuthPassword:
		return "password"
	case AuthOAuth2:
		return "oauth2"
	}
	return fmt.Sprintf("Auth(%d)", int(a))
}

// Provider is the OAuth 2.0 authorization server of the settings.
type Provider int

// The OAuth 2.0 providers.
const (
	// NoProvider: no OAuth 2.0 (or none known).
	NoProvider Provider = iota
	// Google (Gmail, Google Workspace).
	Google
	// Microsoft (Outlook.com, Microsoft 365).
	Microsoft
	// GenericOAuth2 is an OAuth 2.0 server mailbus has no preset for: its
	// token URL must be given.
	GenericOAuth2
)

// String names the provider as the CLI's --oauth flag does.
func (p Provider) String() string {
	switch p {
	case NoProvider:
		return ""
	case Google:
		return "google"
	case Microsoft:
		return "microsoft"
	case GenericOAuth2:
		return "generic"
	}
	return fmt.Sprintf("Provider(%d)", int(p))
}

// Source is where settings were found.
type Source int

// The sources, in the order they are tried.
const (
	SourcePreset Source = iota + 1
	SourceAutoconfig
	SourceSRV
	SourceMX
)

// String names the source.
func (s Source) String() string {
	switch s {
	case SourcePreset:
		return "preset"
	case SourceAutoconfig:
		return "autoconfig"
	case SourceSRV:
		return "dns-srv"
	case SourceMX:
		return "mx"
	}
	return fmt.Sprintf("Source(%d)", int(s))
}

// Result is the settings found for an address, and where.
type Result struct {
	Protocol Protocol
	Host     string
	Port     int
	Security Security
	// Username is the login name: the address unless the source says
	// otherwise (autoconfig's %EMAILLOCALPART%, web.de's preset).
	Username string
	// Auth is the login the server takes; OAuth2Provider says whose
	// tokens when Auth is AuthOAuth2 (and for presets whose provider
	// offers OAuth 2.0 besides app passwords).
	Auth           Auth
	OAuth2Provider Provider
	// Source and Where say where the settings came from: the preset's
	// name, the autoconfig URL, the SRV record's name, the MX host.
	Source Source
	Where  string
	// Provider is the provider's display name, when known ("Gmail").
	Provider string
	// Guess is true when the settings are a guess (the MX host taken
	// for the IMAP or POP3 host): check them before relying on them.
	Guess bool
	// Note is advice on the login, such as "Microsoft accepts only OAuth
	// 2.0"; may be empty.
	Note string
	// Skipped lists the sources tried before, and why each gave nothing.
	Skipped []Attempt
}

// Attempt is a source that was tried and gave no settings.
type Attempt struct {
	Source Source
	// Where is the URL or DNS name asked.
	Where string
	// Err says why it gave nothing.
	Err error
}

// String is one line for humans.
func (a Attempt) String() string { return fmt.Sprintf("%s %s: %v", a.Source, a.Where, a.Err) }

// Sentinel errors, tested with errors.Is.
var (
	// ErrInvalidAddress: the email address has no usable domain.
	ErrInvalidAddress = errors.New("invalid email address")
	// ErrNoPreset: Preset knows no provider for the domain.
	ErrNoPreset = errors.New("no preset for the domain")
	// ErrNotOffered: the provider or the domain says it offers no such
	// service (a preset without the protocol, or SRV target ".").
	ErrNotOffered = errors.New("service not offered")
	// ErrNotFound: no source gave settings.
	ErrNotFound = errors.New("no server settings found")
)

// NotFoundError is the error when no source gave settings: it lists what
// was tried and why each failed. It matches ErrNotFound.
type NotFoundError struct {
	Protocol Protocol
	Domain   string
	Tried    []Attempt
}

// Error lists the attempts.
func (e *NotFoundError) Error() string {
	parts := make([]string, len(e.Tried))
	for i, a := range e.Tried {
		parts[i] = a.String()
	}
	return fmt.Sprintf("no %s server found for %s (tried %s)", strings.ToUpper(e.Protocol.String()), e.Domain, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrNotFound) true.
func (e *NotFoundError) Is(target error) bool { return target == ErrNotFound }

// Defaults of Config.
const (
	// DefaultTimeout bounds each lookup (one HTTP request, one DNS
	// query): autoconfig servers that hang must not hold the search for
	// longer than a user waits at a prompt.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxConfigSize caps an autoconfig file: real ones are 1 to 5
	// KB; the cap keeps a hostile server from making the store buffer
	// much.
	DefaultMaxConfigSize = 256 << 10
	// maxRedirects is as many as a web browser's users would accept for
	// one file.
	maxRedirects = 5
)

// Config configures a Discoverer. The zero value looks up the real
// internet with the system's resolver.
type Config struct {
	// HTTPClient fetches autoconfig files; nil means a client of the
	// package's own (dialing through Resolver). Whatever the client's own
	// redirect policy, redirects are followed only to HTTPS URLs, at most
	// 5.
	HTTPClient *http.Client
	// Resolver answers the SRV and MX queries (and, for the default
	// HTTP client, the autoconfig hosts); nil means net.DefaultResolver.
	// See ResolverAt.
	Resolver *net.Resolver
	// Timeout bounds each lookup; 0 means DefaultTimeout.
	Timeout time.Duration
	// MaxConfigSize caps an autoconfig file in bytes; 0 means
	// DefaultMaxConfigSize.
	MaxConfigSize int64
}

// Discoverer finds server settings. It is safe for concurrent use.
type Discoverer struct {
	client   *http.Client
	resolver *net.Resolver
	timeout  time.Duration
	maxSize  int64
}

// New returns a Discoverer for cfg.
func New(cfg Config) *Discoverer {
	d := &Discoverer{resolver: cfg.Resolver, timeout: cfg.Timeout, maxSize: cfg.MaxConfigSize}
	if d.resolver == nil {
		d.resolver = net.DefaultResolver
	}
	if d.timeout <= 0 {
		d.timeout = DefaultTimeout
	}
	if d.maxSize <= 0 {
		d.maxSize = DefaultMaxConfigSize
	}
	var c http.Client
	if cfg.HTTPClient != nil {
		c = *cfg.HTTPClient
	} else {
		c.Transport = defaultTransport(d.resolver, d.timeout)
	}
	c.CheckRedirect = httpsRedirectsOnly
	d.client = &c
	return d
}

// ResolverAt returns a resolver that sends every query to the DNS server
// at addr (host:port), over the network the Go resolver asks for (UDP,
// TCP on truncation): for tests against a local server, or for a store
// that must use a particular one.
func ResolverAt(addr string) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
}

// Discover finds the settings of protocol p for the address email,
// trying the sources in order (see the package doc). An address without
// a valid domain is ErrInvalidAddress; nothing found is a *NotFoundError.
func (d *Discoverer) Discover(ctx context.Context, email string, p Protocol) (*Result, error) {
	addr, err := ParseAddress(email)
	if err != nil {
		return nil, err
	}
	if p != IMAP && p != POP3 {
		return nil, fmt.Errorf("discover: protocol %v: want IMAP or POP3", p)
	}
	r, err := presetResult(addr, p)
	if !errors.Is(err, ErrNoPreset) {
		return r, err
	}
	var tried []Attempt
	for _, source := range []func(context.Context, Address, Protocol) (*Result, []Attempt, error){d.autoconfig, d.srv, d.mx} {
		r, attempts, err := source(ctx, addr, p)
		tried = append(tried, attempts...)
		if r != nil {
			r.Skipped = tried
			return r, nil
		}
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("discover %s: %w", addr.Domain, err)
		}
	}
	return nil, &NotFoundError{Protocol: p, Domain: addr.Domain, Tried: tried}
}

// defaultPort is the protocol's port for the security.
func defaultPort(p Protocol, s Security) int {
	switch {
	case p == IMAP && s == TLS:
		return 993
	case p == IMAP:
		return 143
	case s == TLS:
		return 995
	}
	return 110
}
