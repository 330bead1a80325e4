package cli

// OAuth 2.0 accounts (issue 14, decision 0039): account add --oauth and
// account update --reauthorize obtain a refresh token with the browser
// flow (authorization code, PKCE, loopback redirect) or the device flow,
// or take one from --refresh-token-file, and give it to the store, which
// renews the access tokens (decision 0036). The client secret and the
// refresh token are never printed.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthflow"
)

// browserWait bounds the wait for the user in the browser flow (the device
// flow ends when its code expires).
const browserWait = 15 * time.Minute

// oauthFlags are the OAuth 2.0 flags of account add and account update.
type oauthFlags struct {
	provider                         string
	clientID, clientSecretFile       string
	refreshTokenFile                 string
	tokenURL, authURL, deviceAuthURL string
	scopes                           []string
	device                           bool
	reauthorize                      bool // update only
}

// registerAdd adds account add's OAuth flags.
func (o *oauthFlags) registerAdd(fl *pflag.FlagSet) {
	fl.StringVar(&o.provider, "oauth", "", "log in with OAuth 2.0 (XOAUTH2) instead of a password: google, microsoft or generic; runs the browser flow unless --oauth-device or --refresh-token-file")
	fl.StringVar(&o.clientID, "client-id", "", "OAuth: the client id of your app registration (required with --oauth)")
	fl.StringVar(&o.clientSecretFile, "client-secret-file", "", "OAuth: read the client secret from this file (its first line); leave out for a public client")
	o.registerCommon(fl)
	fl.StringVar(&o.tokenURL, "token-url", "", "OAuth generic: the token endpoint (HTTPS; plain HTTP only to a loopback address)")
	fl.StringSliceVar(&o.scopes, "scope", nil, "OAuth: a scope to ask for (repeat the flag); default google: https://mail.google.com/, microsoft: offline_access and the Outlook IMAP and POP scopes, generic: none")
}

// registerUpdate adds account update's OAuth flags.
func (o *oauthFlags) registerUpdate(fl *pflag.FlagSet) {
	fl.BoolVar(&o.reauthorize, "reauthorize", false, "OAuth accounts: run the authorization again (browser flow, or --oauth-device) and give the store the new refresh token; un-parks an account that needs re-authorization")
	fl.StringVar(&o.clientSecretFile, "client-secret-file", "", "OAuth accounts: a new client secret from this file (its first line); the flows of --reauthorize need it again (the store never gives it back)")
	o.registerCommon(fl)
}

func (o *oauthFlags) registerCommon(fl *pflag.FlagSet) {
	fl.BoolVar(&o.device, "oauth-device", false, "OAuth: use the device flow (a code to enter at a URL, on any device) instead of the browser flow; microsoft, or generic with --device-auth-url")
	fl.StringVar(&o.refreshTokenFile, "refresh-token-file", "", "OAuth: read a refresh token obtained elsewhere from this file (its first line) instead of running a flow; it is checked with one refresh")
	fl.StringVar(&o.authURL, "auth-url", "", "OAuth generic: the authorization endpoint (browser flow)")
	fl.StringVar(&o.deviceAuthURL, "device-auth-url", "", "OAuth generic: the device authorization endpoint (--oauth-device)")
}

// oauthPlan is what a command will do to obtain OAuth credentials, checked
// before the store is asked anything.
type oauthPlan struct {
	provider     mailbusv1.Oauth2Provider
	flow         oauthflow.Config
	refreshToken string // from --refresh-token-file
	device       bool
	secretGiven  bool
	who          string // the address, for the prompts
}

func providerName(p mailbusv1.Oauth2Provider) string {
	switch p {
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE:
		return "google"
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_MICROSOFT:
		return "microsoft"
	case mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC:
		return "generic"
	}
	return fmt.Sprintf("unknown (%d)", p)
}

func parseProvider(s string) (mailbusv1.Oauth2Provider, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "google", "gmail":
		return mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE, nil
	case "microsoft", "outlook", "office365":
		return mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_MICROSOFT, nil
	case "generic":
		return mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC, nil
	}
	return 0, usagef("--oauth %q: want google, microsoft or generic", s)
}

// plan checks the OAuth flags of account add (stored == nil) or update
// (stored: the account's credentials) and reads the files they name.
func (o *oauthFlags) plan(cmd *cobra.Command, stored *mailbusv1.Oauth2Credentials, who string) (*oauthPlan, error) {
	fl := cmd.Flags()
	p := &oauthPlan{device: o.device, who: who}
	var tokenURL string
	if stored == nil {
		prov, err := parseProvider(o.provider)
		if err != nil {
			return nil, err
		}
		p.provider, tokenURL, p.flow.Scopes = prov, strings.TrimSpace(o.tokenURL), o.scopes
		if p.flow.ClientID = strings.TrimSpace(o.clientID); p.flow.ClientID == "" {
			return nil, usagef("--oauth needs --client-id: the client id of your app registration at the provider (README: OAuth accounts)")
		}
	} else {
		p.provider, tokenURL, p.flow.ClientID, p.flow.Scopes = stored.Provider, stored.TokenUrl, stored.ClientId, stored.Scopes
	}
	if o.device && o.refreshTokenFile != "" {
		return nil, usagef("give --oauth-device or --refresh-token-file, not both")
	}
	if stored == nil && (fl.Changed("password-file") || fl.Changed("password-env")) {
		return nil, usagef("--oauth accounts log in with an access token, not a password: leave out --password-file and --password-env")
	}
	if err := p.endpoints(o, fl, tokenURL, stored == nil); err != nil {
		return nil, err
	}
	if o.clientSecretFile != "" {
		s, err := firstLine(o.clientSecretFile, "--client-secret-file")
		if err != nil {
			return nil, err
		}
		p.flow.ClientSecret, p.secretGiven = s, true
	}
	if o.refreshTokenFile != "" {
		rt, err := firstLine(o.refreshTokenFile, "--refresh-token-file")
		if err != nil {
			return nil, err
		}
		p.refreshToken = rt
	}
	if who != "" && strings.Contains(who, "@") {
		p.flow.AuthParams.Set("login_hint", who)
	}
	return p, nil
}

// endpoints fills in the provider's endpoints, scopes and parameters, or
// the generic provider's from the flags, and checks them.
func (p *oauthPlan) endpoints(o *oauthFlags, fl *pflag.FlagSet, tokenURL string, adding bool) error {
	p.flow.AuthParams = map[string][]string{}
	if p.provider != mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC {
		for _, f := range []string{"token-url", "auth-url", "device-auth-url"} {
			if fl.Lookup(f) != nil && fl.Changed(f) {
				return usagef("--%s is for --oauth generic only: %s's endpoints are built in (for a single-tenant Microsoft app, use --oauth generic with the tenant's URLs)", f, providerName(p.provider))
			}
		}
		prov, ok := oauthflow.Lookup(providerName(p.provider))
		if !ok {
			return fmt.Errorf("the account's OAuth provider %s is not known to this mailbus", providerName(p.provider))
		}
		p.flow.Endpoints = prov.Endpoints
		p.flow.AuthParams = prov.AuthParams
		if len(p.flow.Scopes) == 0 {
			p.flow.Scopes = prov.Scopes
		}
		if p.device && prov.NoDevice != "" {
			return usagef("--oauth-device: %s", prov.NoDevice)
		}
		return nil
	}
	if tokenURL == "" {
		return usagef("--oauth generic needs --token-url: the server's token endpoint")
	}
	p.flow.TokenURL = tokenURL
	p.flow.AuthURL, p.flow.DeviceAuthURL = strings.TrimSpace(o.authURL), strings.TrimSpace(o.deviceAuthURL)
	for _, e := range []struct{ flag, url string }{{"token-url", p.flow.TokenURL}, {"auth-url", p.flow.AuthURL}, {"device-auth-url", p.flow.DeviceAuthURL}} {
		if e.url == "" {
			continue
		}
		if err := oauthflow.CheckURL(e.url); err != nil {
			return usagef("--%s: %v", e.flag, err)
		}
	}
	switch {
	case o.refreshTokenFile != "":
	case p.device && p.flow.DeviceAuthURL == "":
		return usagef("--oauth-device with the generic provider needs --device-auth-url: the server's device authorization endpoint")
	case !p.device && p.flow.AuthURL == "":
		if adding {
			return usagef("--oauth generic needs --auth-url for the browser flow (or --oauth-device with --device-auth-url, or --refresh-token-file)")
		}
		return usagef("--reauthorize of a generic OAuth account needs --auth-url (the store keeps only the token URL), or --oauth-device with --device-auth-url")
	}
	return nil
}

// firstLine reads the first line of a file named by a flag.
func firstLine(path, flag string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", usagef("%s: %v", flag, err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimSpace(line)
	if line == "" {
		return "", usagef("%s %s is empty", flag, path)
	}
	return line, nil
}

// obtain runs the flow (or checks the refresh token of
// --refresh-token-file) and returns the refresh token to store. The
// prompts go to standard error, so that --json output stays clean.
func (a *app) obtain(ctx context.Context, p *oauthPlan) (string, error) {
	w := a.io.Err
	var tok oauthflow.Token
	var err error
	switch {
	case p.refreshToken != "":
		// One refresh, as the store will do it: checks the token and the
		// client credentials now rather than parking the account later.
		// A server that rotates refresh tokens answers a new one.
		tok, err = p.flow.Refresh(ctx, p.refreshToken)
	case p.device:
		tok, err = p.flow.Device(ctx, func(d oauthflow.DeviceCode) {
			fmt.Fprintf(w, "To let mailbus read the mail of %s, open\n\n    %s\n\nand enter the code  %s\n", p.whoText(), d.VerificationURI, d.UserCode)
			if !d.Expiry.IsZero() {
				fmt.Fprintf(w, "(it expires in %s).", time.Until(d.Expiry).Round(time.Minute))
			}
			fmt.Fprintf(w, " Waiting for the authorization (Ctrl-C to give up)...\n")
		})
		if err == nil && p.secretGiven {
			// The device token request does not always check the client
			// secret; the store's refresh will.
			tok, err = p.flow.Refresh(ctx, tok.RefreshToken)
		}
	default:
		bctx, cancel := context.WithTimeout(ctx, browserWait)
		defer cancel()
		tok, err = p.flow.Browser(bctx, func(authURL string) {
			fmt.Fprintf(w, "To let mailbus read the mail of %s, open this URL in a browser on this machine:\n\n    %s\n\n", p.whoText(), authURL)
			fmt.Fprintf(w, "Waiting for the authorization on %s (Ctrl-C to give up; from another machine, forward that port with ssh -L, or use --oauth-device where the provider has it)...\n",
				redirectOf(authURL))
		})
	}
	if err != nil {
		return "", p.explain(err)
	}
	if p.refreshToken == "" {
		fmt.Fprintln(w, "Authorized.")
	}
	return tok.RefreshToken, nil
}

func (p *oauthPlan) whoText() string {
	if p.who == "" {
		return "the account"
	}
	return printable(p.who)
}

// redirectOf returns the redirect URI of an authorization URL.
func redirectOf(authURL string) string {
	u, err := url.Parse(authURL)
	if err != nil {
		return oauthflow.LoopbackHost
	}
	return u.Query().Get("redirect_uri")
}

// explain names the flag behind an authorization server's refusal.
func (p *oauthPlan) explain(err error) error {
	var oe *oauthflow.Error
	switch {
	case errors.As(err, &oe) && oe.ClientRefused():
		if !p.secretGiven {
			return fmt.Errorf("--client-secret-file: the authorization server refused the client (%v): give the client secret of --client-id %s, or check the client id", err, p.flow.ClientID)
		}
		return fmt.Errorf("--client-secret-file: the authorization server refused the client secret or --client-id %s (%v)", p.flow.ClientID, err)
	case errors.As(err, &oe) && oe.Code == "invalid_request" && oe.Endpoint == "token" && !p.secretGiven:
		// Google answers a missing client secret so.
		return fmt.Errorf("--client-secret-file: the token endpoint refused the request (%v): a client with a secret (such as a Google desktop app) needs it with every authorization", err)
	case errors.As(err, &oe) && oe.Code == "invalid_grant" && p.refreshToken != "":
		return fmt.Errorf("--refresh-token-file: the authorization server refused the refresh token (%v): it is revoked, expired, already used (rotated), or was issued to another client", err)
	case errors.As(err, &oe) && oe.Code == "invalid_scope":
		return fmt.Errorf("--scope: the authorization server refused the scopes %s (%v)", strings.Join(p.flow.Scopes, " "), err)
	case errors.As(err, &oe) && oe.Code == "access_denied":
		return fmt.Errorf("the authorization was denied (%v): nothing was changed", err)
	case errors.As(err, &oe) && oe.Code == "expired_token":
		return fmt.Errorf("the device code expired before the authorization (%v): nothing was changed; run the command again", err)
	case errors.Is(err, oauthflow.ErrStateMismatch):
		return fmt.Errorf("oauth: %w; nothing was changed", err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("oauth: no authorization arrived in time (%v): nothing was changed; run the command again", err)
	}
	return fmt.Errorf("oauth: %w", err)
}

// credentials are the oauth2 field of the account.
func (p *oauthPlan) credentials(refreshToken string) *mailbusv1.Oauth2Credentials {
	c := &mailbusv1.Oauth2Credentials{Provider: p.provider, ClientId: p.flow.ClientID, ClientSecret: p.flow.ClientSecret,
		RefreshToken: refreshToken, Scopes: slices.Clone(p.flow.Scopes)}
	if p.provider == mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC {
		c.TokenUrl = p.flow.TokenURL
	}
	return c
}

// checkProvider refuses an unknown --oauth provider before anything else
// (discovery, required flags) is looked at.
func (o *oauthFlags) checkProvider() error {
	if o.provider == "" {
		return nil
	}
	_, err := parseProvider(o.provider)
	return err
}

// oauthUpdating reports whether account update's OAuth flags ask for
// anything.
func (o *oauthFlags) updating() bool {
	return o.reauthorize || o.refreshTokenFile != "" || o.clientSecretFile != ""
}

// oauthUpdate adds the OAuth part of account update to upd and returns
// its update mask paths. moves: the update points the account at another
// server, which clears its stored credentials (decision 0023), so they
// must come with it.
func (a *app) oauthUpdate(ctx context.Context, cmd *cobra.Command, o *oauthFlags, acct, upd *mailbusv1.Account, moves bool) ([]string, error) {
	if !o.updating() {
		if moves {
			return nil, usagef("changing the host, port or security clears the stored OAuth credentials (they are never sent to a server they were not given for): add --reauthorize (with --client-secret-file) or --refresh-token-file and --client-secret-file")
		}
		return nil, nil
	}
	if acct.GetOauth2() == nil {
		return nil, usagef("account %s has no OAuth credentials: --reauthorize, --refresh-token-file and --client-secret-file are for accounts added with --oauth", acct.Name)
	}
	if (o.device || o.authURL != "" || o.deviceAuthURL != "") && !o.reauthorize {
		return nil, usagef("--oauth-device, --auth-url and --device-auth-url go with --reauthorize")
	}
	if o.reauthorize && o.refreshTokenFile != "" {
		return nil, usagef("give --reauthorize or --refresh-token-file, not both")
	}
	p, err := o.plan(cmd, acct.Oauth2, acct.Username)
	if err != nil {
		return nil, err
	}
	upd.Oauth2 = &mailbusv1.Oauth2Credentials{ClientSecret: p.flow.ClientSecret}
	var paths []string
	if p.secretGiven || moves {
		paths = append(paths, "oauth2.client_secret")
	}
	if o.reauthorize || p.refreshToken != "" {
		rt, err := a.obtain(ctx, p)
		if err != nil {
			return nil, err
		}
		upd.Oauth2.RefreshToken = rt
		paths = append(paths, "oauth2.refresh_token")
	} else if moves {
		return nil, usagef("changing the host, port or security clears the stored OAuth credentials: add --reauthorize or --refresh-token-file")
	}
	return paths, nil
}

// reauthHint is what to do about an account parked because its OAuth
// server refused the refresh token, or because an update that moved it to
// another server cleared its credentials; empty for other accounts.
func reauthHint(acct *mailbusv1.Account) string {
	r := strings.ToLower(acct.GetStatus().GetReason())
	if acct.GetOauth2() == nil || (!strings.HasPrefix(r, "re-authorization needed") && !strings.Contains(r, "oauth credentials were cleared")) {
		return ""
	}
	extra := ""
	if acct.Oauth2.Provider == mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC {
		extra = " --auth-url URL"
	}
	why := "the OAuth server no longer accepts the account's refresh token (access withdrawn, password changed, or expired)"
	switch {
	case !strings.HasPrefix(r, "re-authorization needed"):
		why = "the account's OAuth credentials were cleared when it moved to another server"
	case strings.Contains(r, "refused the client"):
		why = "the OAuth server refused the account's OAuth client (a wrong client id or secret, or a deleted client)"
	case strings.Contains(r, "refused the account's credentials"):
		why = "the OAuth server refused the account's OAuth credentials (its reason is in the status)"
	}
	return fmt.Sprintf("%s: authorize again with `mailbus account update %s --reauthorize --client-secret-file FILE%s` (add --oauth-device for the device flow), or give a new token with --refresh-token-file FILE (and --client-secret-file FILE)", why, acct.Name, extra)
}

// addPlan is the OAuth plan of account add: nil without --oauth (and an
// error when OAuth flags come without it).
func (o *oauthFlags) addPlan(cmd *cobra.Command, who string) (*oauthPlan, error) {
	fl := cmd.Flags()
	if !fl.Changed("oauth") {
		for _, f := range []string{"client-id", "client-secret-file", "refresh-token-file", "oauth-device", "token-url", "auth-url", "device-auth-url", "scope"} {
			if fl.Changed(f) {
				return nil, usagef("--%s goes with --oauth google|microsoft|generic", f)
			}
		}
		return nil, nil
	}
	return o.plan(cmd, nil, who)
}

// oauthAdd obtains the refresh token for a new account and sets its
// OAuth credentials. It first checks that the name is free, so that the
// user does not authorize for an account the store then refuses.
func (a *app) oauthAdd(ctx context.Context, c *client, p *oauthPlan, acct *mailbusv1.Account) error {
	cctx, cancel := c.call(ctx)
	_, err := c.accounts.GetAccount(cctx, &mailbusv1.GetAccountRequest{Name: acct.Name})
	cancel()
	switch {
	case err == nil:
		return usagef("an account named %q exists already: choose another --name (or update it with `mailbus account update %s --reauthorize`)", acct.Name, acct.Name)
	case !isNotFound(err):
		return fmt.Errorf("add account %s: %w", acct.Name, err)
	}
	rt, err := a.obtain(ctx, p)
	if err != nil {
		return err
	}
	acct.AuthMethod = mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2
	acct.Oauth2 = p.credentials(rt)
	return nil
}

// updatedWhat names the changed fields of an update for its message.
func updatedWhat(paths []string) string {
	words := make([]string, len(paths))
	for i, p := range paths {
		switch p {
		case "secret":
			p = "password"
		case "oauth2.refresh_token":
			p = "OAuth refresh token"
		case "oauth2.client_secret":
			p = "OAuth client secret"
		}
		words[i] = p
	}
	return strings.Join(words, ", ")
}

// printOAuth adds an OAuth account's login to account show.
func printOAuth(w io.Writer, acct *mailbusv1.Account) {
	o := acct.GetOauth2()
	if o == nil {
		return
	}
	fmt.Fprintf(w, "  login:      OAuth 2.0 (XOAUTH2), provider %s, client id %s", providerName(o.Provider), printable(o.ClientId))
	if o.TokenUrl != "" {
		fmt.Fprintf(w, ", token URL %s", printable(o.TokenUrl))
	}
	fmt.Fprintln(w)
	if len(o.Scopes) > 0 {
		fmt.Fprintf(w, "  scopes:     %s\n", printable(strings.Join(o.Scopes, " ")))
	}
	if t := o.GetAccessTokenExpireTime(); t != nil {
		fmt.Fprintf(w, "  token:      the store's access token expires %s\n", formatTime(t))
	}
}
