package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"google.golang.org/grpc/metadata"

	"github.com/mailbus/mailbus/pkg/discover"
	"github.com/mailbus/mailbus/pkg/discover/discoverpb"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// discoverCallTimeout is the least deadline of a DiscoverSettings call:
// the store bounds its own lookups at 60 s (five lookups of 10 s at
// most), longer than --timeout's usual 10 s.
const discoverCallTimeout = 70 * time.Second

// discoverFlags are account add's --email and --dry-run (decision 0038).
type discoverFlags struct {
	email  string
	dryRun bool
	// found is what discovery found, when it ran.
	found *mailbusv1.DiscoverSettingsResponse
}

func addDiscoverFlags(fl *pflag.FlagSet, f *discoverFlags) {
	fl.StringVar(&f.email, "email", "", "the email address; without --host the server is found from it (built-in presets, autoconfig, DNS SRV, MX), and --username and --name default to it")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the settings, found or given, and add nothing")
}

// applyEmail fills the flags that --email implies and the user left
// unset: with no --host, the server found for the address (a built-in
// preset without any network lookup, else the store's DiscoverSettings);
// then --protocol imap, and --username and --name the address.
func (a *app) applyEmail(ctx context.Context, cmd *cobra.Command, f *discoverFlags) error {
	fl := cmd.Flags()
	if !fl.Changed("email") {
		if fl.Changed("name") && !fl.Changed("host") { // without --name, requireFlags asks for it first
			return usagef("missing --host: give the server's --host, or --email to find it from the address")
		}
		return nil
	}
	email := strings.TrimSpace(f.email)
	if email == "" {
		return usagef("--email is empty")
	}
	set := func(name, value string) error {
		if fl.Changed(name) {
			return nil
		}
		if err := fl.Set(name, value); err != nil {
			return fmt.Errorf("--%s %q: %w", name, value, err)
		}
		return nil
	}
	if !fl.Changed("host") {
		p := mailbusv1.Protocol_PROTOCOL_IMAP
		if fl.Changed("protocol") {
			switch strings.ToLower(fl.Lookup("protocol").Value.String()) {
			case "imap":
			case "pop3", "pop":
				p = mailbusv1.Protocol_PROTOCOL_POP3
			default:
				return usagef("--protocol %q: want imap or pop3", fl.Lookup("protocol").Value.String())
			}
		}
		found, err := a.discoverSettings(ctx, email, p)
		if err != nil {
			return err
		}
		f.found = found
		s := found.Account
		for _, kv := range [][2]string{
			{"protocol", protocolName(s.Protocol)}, {"host", s.Host}, {"port", strconv.FormatUint(uint64(s.Port), 10)},
			{"security", securityName(s.Security)}, {"username", s.Username},
		} {
			if err := set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		if !f.dryRun {
			w := a.io.Out
			if a.json {
				w = a.io.Err // the answer's JSON stays alone on standard output
			}
			fmt.Fprintf(w, "Found %s:%d (%s) for %s from %s.\n", printable(s.Host), s.Port, securityName(s.Security), printable(email), sourceText(found))
			if found.Guess {
				fmt.Fprintf(w, "This is a guess: if the account does not sync, give --host, --port and --security.\n")
			}
			if found.Note != "" && !fl.Changed("oauth") { // the advice is about the login
				fmt.Fprintf(a.io.Err, "Note: %s.\n", printable(found.Note))
			}
		}
	}
	for _, kv := range [][2]string{{"protocol", "imap"}, {"username", email}, {"name", email}} {
		if err := set(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// discoverSettings answers a preset offline and asks the store for the
// rest: its lookups come from the network the fetchers connect from, and
// carry its limits (decision 0038).
func (a *app) discoverSettings(ctx context.Context, email string, p mailbusv1.Protocol) (*mailbusv1.DiscoverSettingsResponse, error) {
	dp, _ := discoverpb.Protocol(p)
	r, err := discover.Preset(email, dp)
	switch {
	case err == nil:
		return discoverpb.Response(r), nil
	case errors.Is(err, discover.ErrInvalidAddress):
		return nil, usagef("--email: %v", strings.TrimPrefix(err.Error(), "email "))
	case errors.Is(err, discover.ErrNotOffered):
		return nil, fmt.Errorf("--email %s: %w", email, err)
	}
	c, err := a.dial()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	cctx := metadata.AppendToOutgoingContext(ctx, "mailbus-device-id", a.device)
	cctx, cancel := context.WithTimeout(cctx, max(a.timeout, discoverCallTimeout))
	defer cancel()
	resp, err := c.accounts.DiscoverSettings(cctx, &mailbusv1.DiscoverSettingsRequest{Email: email, Protocol: p})
	if err != nil {
		return nil, fmt.Errorf("find the server of %s (or give --host, --port and --security): %w", email, err)
	}
	return resp, nil
}

// sourceText says where settings were found, for people.
func sourceText(r *mailbusv1.DiscoverSettingsResponse) string {
	switch r.Source {
	case mailbusv1.DiscoverySource_DISCOVERY_SOURCE_AUTOCONFIG:
		return "autoconfig " + printable(r.SourceDetail)
	case mailbusv1.DiscoverySource_DISCOVERY_SOURCE_DNS_SRV:
		return "DNS SRV record " + printable(r.SourceDetail)
	}
	return printable(r.SourceDetail) // "built-in preset Gmail", "MX ..."
}

// printDryRun prints the account add would create, and how it was found.
func (a *app) printDryRun(acct *mailbusv1.Account, f *discoverFlags) error {
	if a.json {
		if f.found != nil {
			return printJSON(a.io.Out, f.found)
		}
		return printJSON(a.io.Out, acct)
	}
	w := a.io.Out
	if r := f.found; r != nil {
		fmt.Fprintf(w, "Found by %s\n", sourceText(r))
	} else {
		fmt.Fprintln(w, "Settings as given")
	}
	fmt.Fprintf(w, "  name:       %s\n", printable(acct.Name))
	fmt.Fprintf(w, "  protocol:   %s\n", protocolName(acct.Protocol))
	fmt.Fprintf(w, "  server:     %s:%d, security %s\n", printable(acct.Host), acct.Port, securityName(acct.Security))
	fmt.Fprintf(w, "  username:   %s\n", printable(acct.Username))
	if r := f.found; r != nil {
		if r.ProviderName != "" {
			fmt.Fprintf(w, "  provider:   %s\n", printable(r.ProviderName))
		}
		login := "password"
		if r.Account.AuthMethod == mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 {
			login = "OAuth 2.0"
		}
		if p := oauthProviderName(r.Oauth2Provider); p != "" {
			login += " (OAuth 2.0 provider: " + p + ")"
		}
		fmt.Fprintf(w, "  login:      %s\n", login)
		if r.Note != "" {
			fmt.Fprintf(w, "  note:       %s\n", printable(r.Note))
		}
		if r.Guess {
			fmt.Fprintf(w, "  warning:    a guess: check it, or give --host, --port and --security\n")
		}
		for _, s := range r.Skipped {
			fmt.Fprintf(w, "  tried:      %s\n", printable(s))
		}
	}
	fmt.Fprintln(w, "Dry run: no account was added.")
	return nil
}

func oauthProviderName(p mailbusv1.Oauth2Provider) string {
	switch p {
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_UNSPECIFIED:
		return ""
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC:
		return "generic (give its token URL)"
	}
	return providerName(p) // account_oauth.go
}
