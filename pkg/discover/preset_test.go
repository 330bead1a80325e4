package discover_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/discover"
)

// TestPresets checks every built-in provider, IMAP and POP3: host, port,
// security, login, OAuth 2.0 provider, and the source.
func TestPresets(t *testing.T) {
	type want struct {
		host     string
		username string
		auth     discover.Auth
		provider discover.Provider
	}
	tests := []struct {
		email      string
		imap, pop3 want // pop3.host "": not offered
	}{
		{"alice@gmail.com", want{"imap.gmail.com", "alice@gmail.com", discover.AuthOAuth2, discover.Google}, want{"pop.gmail.com", "alice@gmail.com", discover.AuthOAuth2, discover.Google}},
		{"alice@googlemail.com", want{"imap.gmail.com", "alice@googlemail.com", discover.AuthOAuth2, discover.Google}, want{"pop.gmail.com", "alice@googlemail.com", discover.AuthOAuth2, discover.Google}},
		{"alice@outlook.com", want{"outlook.office365.com", "alice@outlook.com", discover.AuthOAuth2, discover.Microsoft}, want{"outlook.office365.com", "alice@outlook.com", discover.AuthOAuth2, discover.Microsoft}},
		{"alice@hotmail.com", want{"outlook.office365.com", "alice@hotmail.com", discover.AuthOAuth2, discover.Microsoft}, want{"outlook.office365.com", "alice@hotmail.com", discover.AuthOAuth2, discover.Microsoft}},
		{"alice@live.com", want{"outlook.office365.com", "alice@live.com", discover.AuthOAuth2, discover.Microsoft}, want{"outlook.office365.com", "alice@live.com", discover.AuthOAuth2, discover.Microsoft}},
		{"alice@yahoo.com", want{"imap.mail.yahoo.com", "alice@yahoo.com", discover.AuthPassword, discover.NoProvider}, want{"pop.mail.yahoo.com", "alice@yahoo.com", discover.AuthPassword, discover.NoProvider}},
		{"alice@ymail.com", want{"imap.mail.yahoo.com", "alice@ymail.com", discover.AuthPassword, discover.NoProvider}, want{"pop.mail.yahoo.com", "alice@ymail.com", discover.AuthPassword, discover.NoProvider}},
		{"bob@aol.com", want{"imap.aol.com", "bob@aol.com", discover.AuthPassword, discover.NoProvider}, want{"pop.aol.com", "bob@aol.com", discover.AuthPassword, discover.NoProvider}},
		{"alice@icloud.com", want{"imap.mail.me.com", "alice@icloud.com", discover.AuthPassword, discover.NoProvider}, want{}},
		{"alice@me.com", want{"imap.mail.me.com", "alice@me.com", discover.AuthPassword, discover.NoProvider}, want{}},
		{"alice@fastmail.com", want{"imap.fastmail.com", "alice@fastmail.com", discover.AuthPassword, discover.NoProvider}, want{"pop.fastmail.com", "alice@fastmail.com", discover.AuthPassword, discover.NoProvider}},
		{"alice@gmx.de", want{"imap.gmx.net", "alice@gmx.de", discover.AuthPassword, discover.NoProvider}, want{"pop.gmx.net", "alice@gmx.de", discover.AuthPassword, discover.NoProvider}},
		{"alice@gmx.com", want{"imap.gmx.com", "alice@gmx.com", discover.AuthPassword, discover.NoProvider}, want{"pop.gmx.com", "alice@gmx.com", discover.AuthPassword, discover.NoProvider}},
		{"alice@web.de", want{"imap.web.de", "alice", discover.AuthPassword, discover.NoProvider}, want{"pop3.web.de", "alice", discover.AuthPassword, discover.NoProvider}},
		{"alice@mail.ru", want{"imap.mail.ru", "alice@mail.ru", discover.AuthPassword, discover.NoProvider}, want{"pop.mail.ru", "alice@mail.ru", discover.AuthPassword, discover.NoProvider}},
		{"alice@bk.ru", want{"imap.mail.ru", "alice@bk.ru", discover.AuthPassword, discover.NoProvider}, want{"pop.mail.ru", "alice@bk.ru", discover.AuthPassword, discover.NoProvider}},
		{"alice@yandex.ru", want{"imap.yandex.com", "alice@yandex.ru", discover.AuthPassword, discover.NoProvider}, want{"pop.yandex.com", "alice@yandex.ru", discover.AuthPassword, discover.NoProvider}},
		{"alice@ya.ru", want{"imap.yandex.com", "alice@ya.ru", discover.AuthPassword, discover.NoProvider}, want{"pop.yandex.com", "alice@ya.ru", discover.AuthPassword, discover.NoProvider}},
		{"alice@zoho.com", want{"imap.zoho.com", "alice@zoho.com", discover.AuthPassword, discover.NoProvider}, want{"pop.zoho.com", "alice@zoho.com", discover.AuthPassword, discover.NoProvider}},
		{"alice@zohomail.eu", want{"imap.zoho.eu", "alice@zohomail.eu", discover.AuthPassword, discover.NoProvider}, want{"pop.zoho.eu", "alice@zohomail.eu", discover.AuthPassword, discover.NoProvider}},
		// Case and a trailing dot do not hide a preset.
		{"Alice@GMail.COM.", want{"imap.gmail.com", "Alice@GMail.COM", discover.AuthOAuth2, discover.Google}, want{"pop.gmail.com", "Alice@GMail.COM", discover.AuthOAuth2, discover.Google}},
	}
	for _, tc := range tests {
		for _, p := range []discover.Protocol{discover.IMAP, discover.POP3} {
			w := tc.imap
			port := 993
			if p == discover.POP3 {
				w, port = tc.pop3, 995
			}
			t.Run(tc.email+"/"+p.String(), func(t *testing.T) {
				r, err := discover.Preset(tc.email, p)
				if w.host == "" {
					if !errors.Is(err, discover.ErrNotOffered) {
						t.Fatalf("got %+v, %v; want ErrNotOffered", r, err)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if r.Host != w.host || r.Port != port || r.Security != discover.TLS || r.Username != w.username ||
					r.Auth != w.auth || r.OAuth2Provider != w.provider || r.Source != discover.SourcePreset || r.Guess || r.Provider == "" {
					t.Errorf("got %+v\nwant host %s port %d tls, username %s, auth %v, provider %v, source preset", r, w.host, port, w.username, w.auth, w.provider)
				}
			})
		}
	}
	if _, err := discover.Preset("alice@example.test", discover.IMAP); !errors.Is(err, discover.ErrNoPreset) {
		t.Errorf("a domain without a preset: %v, want ErrNoPreset", err)
	}
}

// countingConfig is a Config whose every DNS query and HTTP request is
// counted and fails: proof that no lookup happens.
func countingConfig(dns, http_ *atomic.Int64) discover.Config {
	return discover.Config{
		Resolver: &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			dns.Add(1)
			return nil, errors.New("no network in this test")
		}},
		HTTPClient: &http.Client{Transport: roundTripper(func(*http.Request) (*http.Response, error) {
			http_.Add(1)
			return nil, errors.New("no network in this test")
		})},
		Timeout: time.Minute,
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestPresetsNeedNoNetwork: Discover answers a preset domain without a
// DNS query or an HTTP request (a domain without a preset does ask, so
// the counters count).
func TestPresetsNeedNoNetwork(t *testing.T) {
	var dnsN, httpN atomic.Int64
	d := discover.New(countingConfig(&dnsN, &httpN))
	ctx := context.Background()
	for _, email := range []string{"alice@gmail.com", "bob@outlook.com", "carol@icloud.com", "dave@web.de", "erin@yandex.ru"} {
		r, err := d.Discover(ctx, email, discover.IMAP)
		if err != nil || r.Source != discover.SourcePreset {
			t.Fatalf("%s: %+v %v", email, r, err)
		}
	}
	if n, m := dnsN.Load(), httpN.Load(); n != 0 || m != 0 {
		t.Fatalf("presets made %d DNS and %d HTTP lookups, want none", n, m)
	}
	if _, err := d.Discover(ctx, "alice@example.test", discover.IMAP); !errors.Is(err, discover.ErrNotFound) {
		t.Fatalf("no preset, no network: %v, want ErrNotFound", err)
	}
	if dnsN.Load() == 0 || httpN.Load() == 0 {
		t.Fatalf("the counters do not count: %d DNS, %d HTTP", dnsN.Load(), httpN.Load())
	}
}

// TestBadAddresses: an address without a usable domain is
// ErrInvalidAddress, before any lookup.
func TestBadAddresses(t *testing.T) {
	var dnsN, httpN atomic.Int64
	d := discover.New(countingConfig(&dnsN, &httpN))
	for _, email := range []string{"", "alice", "alice@", "@example.com", "alice@example", "alice@exa mple.com", "alice@-bad-.com",
		"alice@example..com", "alice@[127.0.0.1]", "alice@127.0.0.1", "alice@ex_ample.com", "al ice@example.com"} {
		_, err := d.Discover(context.Background(), email, discover.IMAP)
		if !errors.Is(err, discover.ErrInvalidAddress) {
			t.Errorf("%q: %v, want ErrInvalidAddress", email, err)
		}
	}
	if dnsN.Load()+httpN.Load() != 0 {
		t.Errorf("bad addresses made %d lookups", dnsN.Load()+httpN.Load())
	}
	// An internationalized domain is looked up in its ASCII form.
	a, err := discover.ParseAddress("jörg@bücher.example")
	if err != nil || a.Domain != "xn--bcher-kva.example" || a.Local != "jörg" {
		t.Errorf("IDN: %+v %v", a, err)
	}
}
