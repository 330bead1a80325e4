package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// webhookAddFlags are the flags of webhook add.
type webhookAddFlags struct {
	url, secretFile, description string
	accounts, kinds, include     []string
	bodyCap                      uint32
}

func (a *app) webhookAddCommand() *cobra.Command {
	var f webhookAddFlags
	c := &cobra.Command{
		Use:   "add --url URL [--account A]... [--event KIND]... [--include text,html,headers,attachments] [--secret-file F]",
		Short: "Add an HTTP endpoint that receives events; prints its id (and its secret, once)",
		Long: `Add an HTTP endpoint. Every event published from now on that matches
--account and --event is POSTed to --url as JSON (a WebhookPayload: the
event, and for message events the content asked for with --include),
signed with the endpoint's secret:

  Mailbus-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">

The signing secret is read from --secret-file (its first line, at least 16
characters; the file must be private, mode 0600). Without --secret-file
the service makes one, printed once: the second line of the output, after
the endpoint's id. Keep it with the receiver; it is stored encrypted and
never shown again.

A URL whose host is a loopback, private or link-local address is refused
unless the service runs with --allow-private-webhooks (mailbus demo sets
it).`,
		Example: `  mailbus webhook add --url https://crm.example.com/hooks/mailbus
  mailbus webhook add --url https://crm.example.com/hooks/mailbus --account work --account sales \
      --event message.created --include text,attachments --secret-file ~/.crm-webhook-secret
  { read id; read secret; } < <(mailbus webhook add --url https://tickets.example.com/mail)`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			ep, secret, err := f.endpoint(cmd)
			if err != nil {
				return err
			}
			w, err := a.dialWebhooks()
			if err != nil {
				return err
			}
			defer w.Close()
			for _, ref := range f.accounts {
				acct, err := w.account(ctx, ref)
				if err != nil {
					return err
				}
				ep.AccountIds = append(ep.AccountIds, acct.Id)
			}
			ep.Secret = secret
			cctx, cancel := w.call(ctx)
			defer cancel()
			resp, err := w.hooks.CreateEndpoint(cctx, &mailbusv1.CreateEndpointRequest{Endpoint: ep})
			if err != nil {
				return w.explain("add webhook "+ep.Url, err)
			}
			if a.json {
				return printJSON(a.io.Out, resp)
			}
			a.printAddedWebhook(resp, f.accounts)
			return nil
		}),
	}
	fl := c.Flags()
	fl.StringVar(&f.url, "url", "", "the endpoint's http:// or https:// URL (required)")
	fl.StringSliceVar(&f.accounts, "account", nil, "only events of this account, by name or id (repeat for more; default every account)")
	fl.StringSliceVar(&f.kinds, "event", nil, "only events of this kind, such as message.created (repeat or comma-separate; default every kind)")
	fl.StringSliceVar(&f.include, "include", nil, "add this content of the message to message events: text, html, headers, attachments (comma-separated)")
	fl.StringVar(&f.secretFile, "secret-file", "", "read the signing secret from this private file (first line); default a new secret, printed once")
	fl.StringVar(&f.description, "description", "", "a label for people, such as crm")
	fl.Uint32Var(&f.bodyCap, "body-cap", 0, "the most bytes of text and of HTML included; 0 means the service's default (64 KiB)")
	return c
}

// endpoint checks the flags and makes the endpoint to create (without
// its accounts, which need the store), and reads the secret file.
func (f *webhookAddFlags) endpoint(cmd *cobra.Command) (*mailbusv1.WebhookEndpoint, string, error) {
	if err := checkWebhookURL(f.url); err != nil {
		return nil, "", err
	}
	kinds, err := parseEventKinds(f.kinds)
	if err != nil {
		return nil, "", err
	}
	include, err := parseIncludes(f.include)
	if err != nil {
		return nil, "", err
	}
	ep := &mailbusv1.WebhookEndpoint{Url: strings.TrimSpace(f.url), EventKinds: kinds, Description: f.description, BodyCapBytes: f.bodyCap}
	for _, name := range include {
		ep.Include = append(ep.Include, webhookIncludeNames[name])
	}
	for _, ref := range f.accounts {
		if strings.TrimSpace(ref) == "" {
			return nil, "", usagef("--account is empty: give an account's name or id")
		}
	}
	secret := ""
	if cmd.Flags().Changed("secret-file") {
		if secret, err = readWebhookSecret(f.secretFile); err != nil {
			return nil, "", err
		}
	}
	return ep, secret, nil
}

// printAddedWebhook prints the id (and a secret the service made) on
// standard output, one a line, and what was added on standard error.
func (a *app) printAddedWebhook(resp *mailbusv1.CreateEndpointResponse, accounts []string) {
	ep := resp.Endpoint
	fmt.Fprintln(a.io.Out, ep.Id)
	if resp.GeneratedSecret != "" {
		fmt.Fprintln(a.io.Out, resp.GeneratedSecret)
	}
	var include []string
	for _, inc := range ep.Include {
		include = append(include, includeName(inc))
	}
	fmt.Fprintf(a.io.Err, "Added webhook %s: %s\n  accounts: %s\n  events:   %s\n  include:  %s\n",
		ep.Id, printable(ep.Url), listOrAll(accounts), listOrAll(ep.EventKinds), listOrNone(include))
	if resp.GeneratedSecret != "" {
		fmt.Fprintln(a.io.Err, "The second line above is its signing secret, shown only now: the receiver checks the\n"+
			"Mailbus-Signature header with it (README, \"Webhooks\").")
	}
	fmt.Fprintf(a.io.Err, "Try it: %s webhook test %s\n", a.io.Program, ep.Id)
}

// listOrNone is a comma-separated list, or "none" when empty.
func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ",")
}
