package store_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/mailbus/mailbus/pkg/discovertest"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestDiscoverSettings: DiscoverSettings through the API, its lookups
// pointed at a local DNS server and a local autoconfig server: a preset,
// autoconfig (IMAP), SRV (POP3), nothing found, bad addresses naming the
// field email, and a device token refused before any lookup. The answer's
// account, with a name and a password added, is accepted by
// CreateAccount. DiscoverSettings does not touch the database, so SQLite
// alone is run.
func TestDiscoverSettings(t *testing.T) {
	lookups := discovertest.Start(t)
	lookups.ServeFile("autoconfig.example.test", "/mail/config-v1.1.xml", `<clientConfig version="1.1"><emailProvider id="example.test">
  <displayName>Example Mail</displayName>
  <incomingServer type="imap"><hostname>imap.example.test</hostname><port>143</port><socketType>STARTTLS</socketType><username>%EMAILLOCALPART%</username></incomingServer>
  <incomingServer type="imap"><hostname>imap.example.test</hostname><port>993</port><socketType>SSL</socketType><username>%EMAILLOCALPART%</username></incomingServer>
</emailProvider></clientConfig>`)
	lookups.AddRecord(t, "_pop3s._tcp.example.test. 60 IN SRV 10 0 995 pop.example.test.")
	e := startStore(t, dbtest.Backends()[0], storeOpts{noNATS: true, discover: lookups.Config()})
	ctx := callCtx(t)

	got, err := e.accounts.DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: "alice@gmail.com"})
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Account; a.Host != "imap.gmail.com" || a.Port != 993 || a.Security != mailbusv1.Security_SECURITY_TLS || a.Username != "alice@gmail.com" ||
		a.Protocol != mailbusv1.Protocol_PROTOCOL_IMAP || a.AuthMethod != mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 ||
		got.Source != mailbusv1.DiscoverySource_DISCOVERY_SOURCE_PRESET || got.Oauth2Provider != mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE ||
		got.ProviderName != "Gmail" || got.Note == "" {
		t.Errorf("Gmail: %v", got)
	}
	if n := lookups.DNSQueries() + lookups.HTTPRequests(); n != 0 {
		t.Errorf("the preset made %d lookups", n)
	}

	got, err = e.accounts.DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: "alice@example.test", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP})
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Account; a.Host != "imap.example.test" || a.Port != 993 || a.Security != mailbusv1.Security_SECURITY_TLS || a.Username != "alice" ||
		a.AuthMethod != mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD || got.Source != mailbusv1.DiscoverySource_DISCOVERY_SOURCE_AUTOCONFIG ||
		!strings.HasPrefix(got.SourceDetail, "https://autoconfig.example.test/mail/config-v1.1.xml") || got.Guess ||
		got.Oauth2Provider != mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_UNSPECIFIED {
		t.Errorf("autoconfig: %v", got)
	}
	// Ready for CreateAccount once named and given a password.
	got.Account.Name, got.Account.Secret = "example", "pw"
	if _, err := e.accounts.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: got.Account}); err != nil {
		t.Errorf("CreateAccount with the discovered settings: %v", err)
	}

	got, err = e.accounts.DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: "alice@example.test", Protocol: mailbusv1.Protocol_PROTOCOL_POP3})
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Account; a.Host != "pop.example.test" || a.Port != 995 || a.Protocol != mailbusv1.Protocol_PROTOCOL_POP3 ||
		got.Source != mailbusv1.DiscoverySource_DISCOVERY_SOURCE_DNS_SRV || got.SourceDetail != "_pop3s._tcp.example.test" ||
		len(got.Skipped) != 2 || !strings.Contains(got.Skipped[0], "no pop3 server in the clientConfig") || !strings.Contains(got.Skipped[1], "404") {
		t.Errorf("SRV: %v", got)
	}

	_, err = e.accounts.DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: "bob@nothing.test"})
	wantCode(t, "nothing to find", err, codes.NotFound, "")
	if err != nil && !strings.Contains(err.Error(), "_imaps._tcp.nothing.test") {
		t.Errorf("NOT_FOUND does not say what was tried: %v", err)
	}

	before := lookups.DNSQueries() + lookups.HTTPRequests()
	for _, bad := range []string{"", "alice", "alice@", "alice@bad_domain.test", "alice@[192.0.2.1]", "alice@-x-.test", "alice@localhost"} {
		_, err := e.accounts.DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: bad})
		wantCode(t, "email "+bad, err, codes.InvalidArgument, "email")
	}
	_, err = e.accounts.DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: "alice@example.test", Protocol: mailbusv1.Protocol(9)})
	wantCode(t, "unknown protocol", err, codes.InvalidArgument, "protocol")

	// A device token is refused, before any lookup.
	acct := e.createAccount(t, imapAccount("dev"))
	tok, err := mailbusv1.NewTokenServiceClient(e.conn).CreateToken(ctx, &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
		Name: "phone", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{acct.Id},
	}})
	if err != nil {
		t.Fatal(err)
	}
	device := mailbusv1.NewAccountServiceClient(e.dial(t, tok.Secret))
	_, err = device.DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: "carol@example.test"})
	wantCode(t, "device token", err, codes.PermissionDenied, "")
	_, err = mailbusv1.NewAccountServiceClient(e.dial(t, e.serviceToken)).DiscoverSettings(ctx, &mailbusv1.DiscoverSettingsRequest{Email: "carol@example.test"})
	wantCode(t, "service token", err, codes.PermissionDenied, "")
	if after := lookups.DNSQueries() + lookups.HTTPRequests(); after != before {
		t.Errorf("bad input and refused tokens made %d lookups", after-before)
	}
}
