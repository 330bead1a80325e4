package discover_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailbus/mailbus/pkg/discover"
	"github.com/mailbus/mailbus/pkg/discovertest"
)

const (
	autoconfigHost = "autoconfig.example.test"
	autoconfigPath = "/mail/config-v1.1.xml"
	wellKnownHost  = "example.test"
	wellKnownPath  = "/.well-known/autoconfig/mail/config-v1.1.xml"
)

// clientConfig wraps incomingServer elements in a clientConfig document.
func clientConfig(servers ...string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<clientConfig version="1.1">
  <emailProvider id="example.test">
    <domain>example.test</domain>
    <displayName>Example Mail</displayName>
` + strings.Join(servers, "\n") + `
    <outgoingServer type="smtp"><hostname>smtp.example.test</hostname><port>465</port><socketType>SSL</socketType></outgoingServer>
  </emailProvider>
</clientConfig>`
}

func server(typ, host, port, socket, user string, auth ...string) string {
	s := `<incomingServer type="` + typ + `"><hostname>` + host + `</hostname><port>` + port + `</port><socketType>` + socket + `</socketType><username>` + user + `</username>`
	for _, a := range auth {
		s += `<authentication>` + a + `</authentication>`
	}
	return s + `</incomingServer>`
}

func discoverIn(t *testing.T, env *discovertest.Env, email string, p discover.Protocol) (*discover.Result, error) {
	t.Helper()
	cfg := env.Config()
	cfg.MaxConfigSize = 4096
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return discover.New(cfg).Discover(ctx, email, p)
}

// skippedHas reports whether an attempt at where failed saying text.
func skippedHas(r *discover.Result, where, text string) bool {
	for _, a := range r.Skipped {
		if strings.Contains(a.Where, where) && strings.Contains(a.Err.Error(), text) {
			return true
		}
	}
	return false
}

func TestAutoconfig(t *testing.T) {
	type check func(t *testing.T, r *discover.Result, err error)
	tests := []struct {
		name  string
		setup func(env *discovertest.Env)
		proto discover.Protocol
		check check
	}{
		{
			name: "first URL, local-part placeholder",
			setup: func(env *discovertest.Env) {
				env.ServeFile(autoconfigHost, autoconfigPath, clientConfig(
					server("pop3", "pop.example.test", "995", "SSL", "%EMAILADDRESS%"),
					server("imap", "imap.%EMAILDOMAIN%", "1993", "SSL", "%EMAILLOCALPART%", "password-cleartext")))
				env.ServeFile(wellKnownHost, wellKnownPath, clientConfig(server("imap", "other.example.test", "993", "SSL", "x")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Host != "imap.example.test" || r.Port != 1993 || r.Security != discover.TLS || r.Username != "alice" ||
					r.Auth != discover.AuthPassword || r.Source != discover.SourceAutoconfig || r.Provider != "Example Mail" ||
					!strings.HasPrefix(r.Where, "https://autoconfig.example.test/mail/config-v1.1.xml?emailaddress=alice%40example.test") || len(r.Skipped) != 0 {
					t.Errorf("got %+v", r)
				}
			},
		},
		{
			name: "well-known URL, address placeholder, POP3",
			setup: func(env *discovertest.Env) {
				env.ServeFile(wellKnownHost, wellKnownPath, clientConfig(
					server("imap", "imap.example.test", "993", "SSL", "%EMAILADDRESS%"),
					server("pop3", "pop.example.test", "995", "SSL", "%EMAILADDRESS%")))
			},
			proto: discover.POP3,
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil {
					t.Fatal(err)
				}
				if r.Host != "pop.example.test" || r.Port != 995 || r.Username != "alice@example.test" || r.Protocol != discover.POP3 ||
					r.Where != "https://example.test/.well-known/autoconfig/mail/config-v1.1.xml" || !skippedHas(r, autoconfigHost, "404") {
					t.Errorf("got %+v", r)
				}
			},
		},
		{
			name: "SSL preferred over STARTTLS listed first",
			setup: func(env *discovertest.Env) {
				env.ServeFile(autoconfigHost, autoconfigPath, clientConfig(
					server("imap", "plain.example.test", "143", "plain", "%EMAILADDRESS%"),
					server("imap", "starttls.example.test", "143", "STARTTLS", "%EMAILADDRESS%"),
					server("imap", "ssl.example.test", "993", "SSL", "%EMAILADDRESS%")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Host != "ssl.example.test" || r.Security != discover.TLS {
					t.Errorf("got %+v %v, want ssl.example.test with TLS", r, err)
				}
			},
		},
		{
			name: "STARTTLS over plain",
			setup: func(env *discovertest.Env) {
				env.ServeFile(autoconfigHost, autoconfigPath, clientConfig(
					server("imap", "plain.example.test", "143", "plain", "%EMAILADDRESS%"),
					server("imap", "starttls.example.test", "", "STARTTLS", "%EMAILADDRESS%")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Host != "starttls.example.test" || r.Security != discover.STARTTLS || r.Port != 143 {
					t.Errorf("got %+v %v, want starttls.example.test:143 with STARTTLS", r, err)
				}
			},
		},
		{
			name: "plain only is never chosen: falls through to the MX",
			setup: func(env *discovertest.Env) {
				env.ServeFile(autoconfigHost, autoconfigPath, clientConfig(server("imap", "plain.example.test", "143", "plain", "%EMAILADDRESS%")))
				env.ServeFile(wellKnownHost, wellKnownPath, clientConfig(server("imap", "plain.example.test", "143", "plain", "%EMAILADDRESS%")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Source != discover.SourceMX || !skippedHas(r, autoconfigHost, "never chooses plaintext") || !skippedHas(r, wellKnownPath, "never chooses plaintext") {
					t.Errorf("got %+v %v, want the MX guess after plaintext was passed over", r, err)
				}
			},
		},
		{
			name: "garbage XML: a clear error, then the next URL",
			setup: func(env *discovertest.Env) {
				env.ServeFile(autoconfigHost, autoconfigPath, "<html><body>Welcome to nginx!</body>")
				env.ServeFile(wellKnownHost, wellKnownPath, clientConfig(server("imap", "imap.example.test", "993", "SSL", "")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Host != "imap.example.test" || r.Username != "alice@example.test" || !skippedHas(r, autoconfigHost, "not a clientConfig XML document") {
					t.Errorf("got %+v %v", r, err)
				}
			},
		},
		{
			name: "oversized file: a clear error, then the next source",
			setup: func(env *discovertest.Env) {
				huge := clientConfig(server("imap", "imap.example.test", "993", "SSL", "") + "<!--" + strings.Repeat("x", 8192) + "-->")
				env.ServeFile(autoconfigHost, autoconfigPath, huge)
				env.ServeFile(wellKnownHost, wellKnownPath, huge)
				env.AddRecord(t, "_imaps._tcp.example.test. 60 IN SRV 0 0 993 srv.example.test.")
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Source != discover.SourceSRV || !skippedHas(r, autoconfigHost, "larger than 4096 bytes") || !skippedHas(r, wellKnownHost, "larger than 4096 bytes") {
					t.Errorf("got %+v %v", r, err)
				}
			},
		},
		{
			name: "redirect to plain HTTP refused",
			setup: func(env *discovertest.Env) {
				env.Serve(autoconfigHost, autoconfigPath, http.RedirectHandler("http://autoconfig.example.test/cfg.xml", http.StatusFound))
				env.Serve(wellKnownHost, wellKnownPath, http.RedirectHandler("https://autoconfig.example.test/moved.xml", http.StatusMovedPermanently))
				env.ServeFile(autoconfigHost, "/moved.xml", clientConfig(server("imap", "moved.example.test", "993", "SSL", "")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Host != "moved.example.test" || !skippedHas(r, autoconfigHost, "not HTTPS") {
					t.Errorf("got %+v %v; want the HTTPS redirect followed, the HTTP one refused", r, err)
				}
			},
		},
		{
			name: "OAuth2 on a Google host",
			setup: func(env *discovertest.Env) {
				env.ServeFile(autoconfigHost, autoconfigPath, clientConfig(server("imap", "imap.gmail.com", "993", "SSL", "%EMAILADDRESS%", "OAuth2", "password-cleartext")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Auth != discover.AuthOAuth2 || r.OAuth2Provider != discover.Google {
					t.Errorf("got %+v %v, want OAuth 2.0 with Google", r, err)
				}
			},
		},
		{
			name: "OAuth2 elsewhere: the password is taken when offered",
			setup: func(env *discovertest.Env) {
				env.ServeFile(autoconfigHost, autoconfigPath, clientConfig(
					server("imap", "a.example.test", "993", "SSL", "", "GSSAPI"),
					server("imap", "b.example.test", "993", "SSL", "", "OAuth2", "password-cleartext")))
			},
			check: func(t *testing.T, r *discover.Result, err error) {
				if err != nil || r.Host != "b.example.test" || r.Auth != discover.AuthPassword {
					t.Errorf("got %+v %v, want b.example.test with a password (a.example.test takes only GSSAPI)", r, err)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := discovertest.Start(t)
			env.AddRecord(t, "example.test. 60 IN MX 10 mx.example.test.")
			tc.setup(env)
			p := tc.proto
			if p == 0 {
				p = discover.IMAP
			}
			r, err := discoverIn(t, env, "alice@example.test", p)
			tc.check(t, r, err)
		})
	}
}

func TestSRV(t *testing.T) {
	tests := []struct {
		name     string
		records  []string
		proto    discover.Protocol
		host     string
		port     int
		security discover.Security
		source   discover.Source
	}{
		{
			name: "lowest priority value first",
			records: []string{
				"_imaps._tcp.example.test. 60 IN SRV 20 0 993 backup.example.test.",
				"_imaps._tcp.example.test. 60 IN SRV 10 0 1993 primary.example.test.",
			},
			host: "primary.example.test", port: 1993, security: discover.TLS, source: discover.SourceSRV,
		},
		{
			name: "implicit TLS before STARTTLS whatever the priorities",
			records: []string{
				"_imap._tcp.example.test. 60 IN SRV 0 0 143 starttls.example.test.",
				"_imaps._tcp.example.test. 60 IN SRV 50 0 993 tls.example.test.",
			},
			host: "tls.example.test", port: 993, security: discover.TLS, source: discover.SourceSRV,
		},
		{
			name: "target . for imaps: STARTTLS on _imap",
			records: []string{
				"_imaps._tcp.example.test. 60 IN SRV 0 0 0 .",
				"_imap._tcp.example.test. 60 IN SRV 0 0 143 imap.example.test.",
			},
			host: "imap.example.test", port: 143, security: discover.STARTTLS, source: discover.SourceSRV,
		},
		{
			name: "POP3 names",
			records: []string{
				"_imaps._tcp.example.test. 60 IN SRV 0 0 993 imap.example.test.",
				"_pop3s._tcp.example.test. 60 IN SRV 0 0 995 pop.example.test.",
			},
			proto: discover.POP3,
			host:  "pop.example.test", port: 995, security: discover.TLS, source: discover.SourceSRV,
		},
		{
			name:    "no SRV: the MX guess",
			records: nil,
			host:    "mx.example.test", port: 993, security: discover.TLS, source: discover.SourceMX,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := discovertest.Start(t)
			env.AddRecord(t, "example.test. 60 IN MX 10 mx.example.test.")
			for _, rr := range tc.records {
				env.AddRecord(t, rr)
			}
			p := tc.proto
			if p == 0 {
				p = discover.IMAP
			}
			r, err := discoverIn(t, env, "alice@example.test", p)
			if err != nil {
				t.Fatal(err)
			}
			if r.Host != tc.host || r.Port != tc.port || r.Security != tc.security || r.Source != tc.source || r.Username != "alice@example.test" {
				t.Errorf("got %+v\nwant %s:%d %v from %v", r, tc.host, tc.port, tc.security, tc.source)
			}
			// Both autoconfig URLs were tried first (404).
			if !skippedHas(r, autoconfigHost, "404") || !skippedHas(r, wellKnownPath, "404") {
				t.Errorf("autoconfig attempts missing: %v", r.Skipped)
			}
		})
	}

	t.Run("target . for both: not offered, no MX guess", func(t *testing.T) {
		env := discovertest.Start(t)
		env.AddRecord(t, "example.test. 60 IN MX 10 mx.example.test.")
		env.AddRecord(t, "_pop3s._tcp.example.test. 60 IN SRV 0 0 0 .")
		env.AddRecord(t, "_pop3._tcp.example.test. 60 IN SRV 0 0 0 .")
		r, err := discoverIn(t, env, "alice@example.test", discover.POP3)
		if !errors.Is(err, discover.ErrNotOffered) || !strings.Contains(err.Error(), "offers no POP3") {
			t.Fatalf("got %+v %v, want ErrNotOffered saying the domain offers no POP3", r, err)
		}
	})
}

func TestMX(t *testing.T) {
	t.Run("a guess on the lowest preference", func(t *testing.T) {
		env := discovertest.Start(t)
		env.AddRecord(t, "example.test. 60 IN MX 20 mx2.example.test.")
		env.AddRecord(t, "example.test. 60 IN MX 10 mx1.example.test.")
		r, err := discoverIn(t, env, "alice@example.test", discover.POP3)
		if err != nil {
			t.Fatal(err)
		}
		if r.Host != "mx1.example.test" || r.Port != 995 || r.Security != discover.TLS || !r.Guess || r.Source != discover.SourceMX ||
			!strings.Contains(r.Where, "a guess") || !skippedHas(r, "_pop3s._tcp.example.test", "no such record") {
			t.Errorf("got %+v", r)
		}
	})
	t.Run("hosted by Google: Gmail's settings, no guess", func(t *testing.T) {
		env := discovertest.Start(t)
		env.AddRecord(t, "example.test. 60 IN MX 1 aspmx.l.google.com.")
		r, err := discoverIn(t, env, "alice@example.test", discover.IMAP)
		if err != nil {
			t.Fatal(err)
		}
		if r.Host != "imap.gmail.com" || r.Guess || r.OAuth2Provider != discover.Google || r.Source != discover.SourceMX || !strings.Contains(r.Where, "aspmx.l.google.com") {
			t.Errorf("got %+v", r)
		}
	})
	t.Run("hosted by Microsoft 365", func(t *testing.T) {
		env := discovertest.Start(t)
		env.AddRecord(t, "example.test. 60 IN MX 0 example-test.mail.protection.outlook.com.")
		r, err := discoverIn(t, env, "alice@example.test", discover.POP3)
		if err != nil || r.Host != "outlook.office365.com" || r.Port != 995 || r.OAuth2Provider != discover.Microsoft {
			t.Errorf("got %+v %v", r, err)
		}
	})
	t.Run("nothing anywhere: NotFoundError listing every attempt", func(t *testing.T) {
		env := discovertest.Start(t)
		_, err := discoverIn(t, env, "alice@example.test", discover.IMAP)
		var nf *discover.NotFoundError
		if !errors.As(err, &nf) || !errors.Is(err, discover.ErrNotFound) || len(nf.Tried) != 5 {
			t.Fatalf("got %v, want a NotFoundError with 5 attempts (2 autoconfig, 2 SRV, MX)", err)
		}
		for _, want := range []string{"autoconfig https://autoconfig.example.test", "dns-srv _imaps._tcp.example.test", "dns-srv _imap._tcp.example.test", "mx example.test"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %q", err, want)
			}
		}
	})
}

// TestHangingAutoconfig: an autoconfig server that never answers costs
// one lookup timeout per URL, and the search goes on to the next source.
func TestHangingAutoconfig(t *testing.T) {
	env := discovertest.Start(t)
	// The handler hangs until the test ends, not until its request's
	// context ends: once, in CI, the server ended a request's context
	// before the client's deadline, the handler returned an empty 200, and
	// the client reported "not a clientConfig XML document: EOF" instead
	// of a timeout. Registered after env, this cleanup runs before the
	// server's shutdown waits for its handlers.
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	hang := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-stop })
	env.Serve(autoconfigHost, autoconfigPath, hang)
	env.Serve(wellKnownHost, wellKnownPath, hang)
	env.AddRecord(t, "example.test. 60 IN MX 10 mx.example.test.")
	cfg := env.Config()
	cfg.Timeout = 3 * time.Second // per lookup; the DNS answers on loopback come well within it
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := discover.New(cfg).Discover(ctx, "alice@example.test", discover.IMAP)
	if err != nil || r.Source != discover.SourceMX || !skippedHas(r, autoconfigHost, "deadline exceeded") || !skippedHas(r, wellKnownPath, "deadline exceeded") {
		t.Fatalf("got %+v %v, want the MX after both autoconfig URLs timed out", r, err)
	}
}

// TestDiscoverCancelled: the caller's context reaches the lookups: a
// search cancelled while an autoconfig request hangs ends with the
// context's error, without trying the other sources.
func TestDiscoverCancelled(t *testing.T) {
	env := discovertest.Start(t)
	started := make(chan struct{}, 2)
	env.Serve(autoconfigHost, autoconfigPath, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done()
	}))
	env.AddRecord(t, "example.test. 60 IN MX 10 mx.example.test.")
	cfg := env.Config()
	cfg.Timeout = 10 * time.Minute // only the cancellation can end the request
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	r, err := discover.New(cfg).Discover(ctx, "alice@example.test", discover.IMAP)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %+v %v, want context.Canceled", r, err)
	}
	if n := env.DNSQueries(); n != 0 {
		t.Errorf("%d DNS queries after the cancellation", n)
	}
}
