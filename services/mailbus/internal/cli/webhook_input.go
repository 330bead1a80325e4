package cli

import (
	"errors"
	"io/fs"
	"net/url"
	"slices"
	"strings"

	"github.com/mailbus/mailbus/pkg/events"
	"github.com/mailbus/mailbus/pkg/privatefile"
)

// The parts of a message a webhook can ask to have in its payload
// (--include).
const (
	includeText        = "text"
	includeHTML        = "html"
	includeHeaders     = "headers"
	includeAttachments = "attachments"
)

var includeNames = []string{includeText, includeHTML, includeHeaders, includeAttachments}

// minWebhookSecret is the shortest secret --secret-file may hold, as the
// webhooks service requires: a shorter key makes the signature guessable.
const minWebhookSecret = 16

// parseIncludes reads --include (repeatable, comma-separated): each of
// text, html, headers and attachments at most once, in any case.
func parseIncludes(list []string) ([]string, error) {
	var out []string
	for _, s := range list {
		name := strings.ToLower(strings.TrimSpace(s))
		switch {
		case name == "":
			continue
		case !slices.Contains(includeNames, name):
			return nil, usagef("--include %q: want %s", s, strings.Join(includeNames, ", "))
		case !slices.Contains(out, name):
			out = append(out, name)
		}
	}
	return out, nil
}

// parseEventKinds reads --event (repeatable, comma-separated): known event
// kinds such as message.created; none means every kind.
func parseEventKinds(list []string) ([]string, error) {
	var out []string
	for _, s := range list {
		kind := strings.ToLower(strings.TrimSpace(s))
		switch {
		case kind == "":
			continue
		case !slices.Contains(events.Kinds(), kind):
			return nil, usagef("--event %q: want one of %s", s, strings.Join(events.Kinds(), ", "))
		case !slices.Contains(out, kind):
			out = append(out, kind)
		}
	}
	return out, nil
}

// checkWebhookURL refuses what can never be a webhook: a URL that is not
// absolute http(s) with a host. Which hosts are allowed (no private
// addresses unless the service allows them) is the service's decision.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(strings.TrimSpace(raw))
	switch {
	case raw == "":
		return usagef("missing --url: the endpoint that receives the events, such as https://crm.example.com/hooks/mailbus")
	case err != nil:
		return usagef("--url %q: %v", raw, err)
	case u.Scheme != "https" && u.Scheme != "http":
		return usagef("--url %q: want an http:// or https:// URL", raw)
	case u.Host == "" || u.Hostname() == "":
		return usagef("--url %q: no host", raw)
	case u.User != nil:
		return usagef("--url %q: no user or password in the URL; the receiver checks the Mailbus-Signature header instead", u.Redacted())
	}
	return nil
}

// readWebhookSecret reads the signing secret from --secret-file: its
// first line, from a file only its owner may read.
func readWebhookSecret(path string) (string, error) {
	b, err := privatefile.Read(path)
	switch {
	case errors.Is(err, privatefile.ErrNotPrivate):
		return "", usagef("--secret-file: %v", err)
	case errors.Is(err, fs.ErrNotExist):
		return "", usagef("--secret-file %s: no such file", path)
	case err != nil:
		return "", usagef("--secret-file: %v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	secret := strings.TrimSpace(line)
	switch {
	case secret == "":
		return "", usagef("--secret-file %s: the first line is empty", path)
	case len(secret) < minWebhookSecret:
		return "", usagef("--secret-file %s: the secret has %d characters; want at least %d (or leave out --secret-file and one is made)", path, len(secret), minWebhookSecret)
	}
	return secret, nil
}
