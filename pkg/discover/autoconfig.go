package discover

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// autoconfigURLs are the two places Thunderbird looks on the domain's own
// servers, HTTPS only (decision 0038: a plain HTTP answer could be
// anyone's). The first carries the address, as Thunderbird sends it, for
// servers that answer per user.
func autoconfigURLs(addr Address) []string {
	return []string{
		"https://autoconfig." + addr.Domain + "/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape(addr.Email),
		"https://" + addr.Domain + "/.well-known/autoconfig/mail/config-v1.1.xml",
	}
}

// errRedirect is a redirect autoconfig does not follow.
var errRedirect = errors.New("redirect refused")

// httpsRedirectsOnly is every Discoverer client's redirect policy.
func httpsRedirectsOnly(req *http.Request, via []*http.Request) error {
	if req.URL.Scheme != "https" {
		return fmt.Errorf("%w: to %s, which is not HTTPS", errRedirect, req.URL.Redacted())
	}
	if len(via) >= maxRedirects {
		return fmt.Errorf("%w: more than %d", errRedirect, maxRedirects)
	}
	return nil
}

// defaultTransport dials through the resolver with bounded handshakes.
func defaultTransport(r *net.Resolver, timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, Resolver: r}).DialContext,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
	}
}

// autoconfig tries the autoconfig URLs in order.
func (d *Discoverer) autoconfig(ctx context.Context, addr Address, p Protocol) (*Result, []Attempt, error) {
	var tried []Attempt
	for _, u := range autoconfigURLs(addr) {
		r, err := d.autoconfigAt(ctx, u, addr, p)
		if err == nil {
			return r, tried, nil
		}
		tried = append(tried, Attempt{Source: SourceAutoconfig, Where: u, Err: err})
		if ctx.Err() != nil {
			break
		}
	}
	return nil, tried, nil
}

// autoconfigAt fetches and reads one autoconfig file.
func (d *Discoverer) autoconfigAt(ctx context.Context, u string, addr Address, p Protocol) (*Result, error) {
	body, err := d.fetch(ctx, u)
	if err != nil {
		return nil, err
	}
	r, err := parseAutoconfig(body, addr, p)
	if err != nil {
		return nil, err
	}
	r.Where = u
	return r, nil
}

// fetch GETs u within the timeout, refusing bodies over the size cap.
func (d *Discoverer) fetch(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/xml, text/xml")
	resp, err := d.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is in the Attempt already
		}
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, d.maxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if int64(len(body)) > d.maxSize {
		return nil, fmt.Errorf("the file is larger than %d bytes", d.maxSize)
	}
	return body, nil
}

// clientConfig is the part of Thunderbird's config-v1.1.xml that
// discovery reads.
type clientConfig struct {
	XMLName   xml.Name `xml:"clientConfig"`
	Providers []struct {
		ID          string           `xml:"id,attr"`
		DisplayName string           `xml:"displayName"`
		Incoming    []incomingServer `xml:"incomingServer"`
	} `xml:"emailProvider"`
}

type incomingServer struct {
	Type       string   `xml:"type,attr"`
	Hostname   string   `xml:"hostname"`
	Port       string   `xml:"port"`
	SocketType string   `xml:"socketType"`
	Username   string   `xml:"username"`
	Auth       []string `xml:"authentication"`
}

// parseAutoconfig reads a clientConfig document and chooses the server
// of protocol p: implicit TLS before STARTTLS, in document order within
// each; "plain" entries, unsupported logins and invalid hosts or ports
// are passed over. The error says why no entry was usable.
func parseAutoconfig(body []byte, addr Address, p Protocol) (*Result, error) {
	var cc clientConfig
	dec := xml.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&cc); err != nil {
		return nil, fmt.Errorf("not a clientConfig XML document: %w", err)
	}
	if len(cc.Providers) == 0 {
		return nil, errors.New("the clientConfig has no emailProvider")
	}
	want := p.String() // "imap" or "pop3"
	var best *Result
	var reasons []string
	for _, prov := range cc.Providers {
		for _, s := range prov.Incoming {
			if !strings.EqualFold(strings.TrimSpace(s.Type), want) {
				continue
			}
			r, err := incomingResult(s, addr, p)
			if err != nil {
				reasons = append(reasons, err.Error())
				continue
			}
			r.Provider = strings.TrimSpace(prov.DisplayName)
			if best == nil || r.Security < best.Security {
				best = r
			}
		}
	}
	if best != nil {
		return best, nil
	}
	if len(reasons) == 0 {
		return nil, fmt.Errorf("no %s server in the clientConfig", want)
	}
	return nil, fmt.Errorf("no usable %s server in the clientConfig: %s", want, strings.Join(reasons, "; "))
}

// incomingResult checks one incomingServer entry.
func incomingResult(s incomingServer, addr Address, p Protocol) (*Result, error) {
	r := &Result{Protocol: p, Source: SourceAutoconfig}
	switch strings.ToUpper(strings.TrimSpace(s.SocketType)) {
	case "SSL", "TLS":
		r.Security = TLS
	case "STARTTLS":
		r.Security = STARTTLS
	case "PLAIN", "":
		return nil, errors.New("plaintext entry passed over (discovery never chooses plaintext)")
	default:
		return nil, fmt.Errorf("socketType %q not known", s.SocketType)
	}
	host, err := hostnameOf(expand(s.Hostname, addr))
	if err != nil {
		return nil, err
	}
	r.Host = host
	r.Port = defaultPort(p, r.Security)
	if ps := strings.TrimSpace(s.Port); ps != "" {
		n, err := strconv.Atoi(ps)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("port %q: want 1 to 65535", ps)
		}
		r.Port = n
	}
	r.Username = expand(s.Username, addr)
	if r.Username == "" || strings.Count(r.Username, "%") >= 2 {
		r.Username = addr.Email // empty, or a placeholder not known here
	}
	if err := chooseAuth(r, s.Auth); err != nil {
		return nil, err
	}
	return r, nil
}

// chooseAuth sets the login of an entry from its authentication
// elements: OAuth 2.0 when the host is of a provider whose token
// endpoint mailbus knows, else a password when offered, else OAuth 2.0
// with a token URL to be given. None listed means password-cleartext, as
// in Thunderbird.
func chooseAuth(r *Result, methods []string) error {
	var password, oauth bool
	if len(methods) == 0 {
		password = true
	}
	for _, m := range methods {
		switch strings.ToLower(strings.TrimSpace(m)) {
		case "password-cleartext", "plain":
			password = true
		case "oauth2":
			oauth = true
		}
	}
	provider := providerOfHost(r.Host)
	switch {
	case oauth && provider != NoProvider:
		r.Auth, r.OAuth2Provider = AuthOAuth2, provider
	case password:
		r.Auth, r.OAuth2Provider = AuthPassword, provider
	case oauth:
		r.Auth, r.OAuth2Provider = AuthOAuth2, GenericOAuth2
	default:
		return fmt.Errorf("%s: authentication %s not supported (mailbus logs in with a password or OAuth 2.0)", r.Host, strings.Join(methods, ", "))
	}
	return nil
}

// providerOfHost is the OAuth 2.0 provider whose servers these are.
func providerOfHost(host string) Provider {
	for _, ps := range presets {
		if ps.oauth == NoProvider {
			continue
		}
		if host == ps.imapHost || host == ps.pop3Host {
			return ps.oauth
		}
	}
	return NoProvider
}

// expand replaces the placeholders Thunderbird defines.
func expand(s string, addr Address) string {
	return strings.NewReplacer(
		"%EMAILADDRESS%", addr.Email,
		"%EMAILLOCALPART%", addr.Local,
		"%EMAILDOMAIN%", addr.Domain,
	).Replace(strings.TrimSpace(s))
}
