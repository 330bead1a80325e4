package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// maxWebhookOverlap is the longest overlap the webhooks service accepts.
const maxWebhookOverlap = 7 * 24 * time.Hour

func (a *app) webhookRotateSecretCommand() *cobra.Command {
	var (
		secretFile string
		overlap    time.Duration
	)
	c := &cobra.Command{
		Use:   "rotate-secret ID [--secret-file F] [--overlap 24h]",
		Short: "Give a webhook endpoint a new signing secret, the old one still signing for --overlap",
		Long: `Give a webhook endpoint a new signing secret. For --overlap (default 24h,
at most 168h; 0 ends the old secret at once) every request carries two v1=
values in its Mailbus-Signature header, one made with the new secret and
one with the old, so a receiver that still has the old secret keeps
accepting requests until it is given the new one.

The new secret is read from --secret-file (its first line, at least 16
characters; the file must be private, mode 0600). Without --secret-file
the service makes one, printed once on standard output.`,
		Example: `  mailbus webhook rotate-secret 7f3a9c0d                       # prints the new secret; the old one signs for 24h more
  mailbus webhook rotate-secret 7f3a9c0d --secret-file ~/.crm-webhook-secret --overlap 1h
  mailbus webhook rotate-secret 7f3a9c0d --overlap 0          # the old secret stops now`,
		Args: exactArgs(1, "webhook id (see `mailbus webhook list`)"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if overlap < 0 || overlap > maxWebhookOverlap {
				return usagef("--overlap %s: want 0 to %s", overlap, maxWebhookOverlap)
			}
			secret := ""
			if cmd.Flags().Changed("secret-file") {
				var err error
				if secret, err = readWebhookSecret(secretFile); err != nil {
					return err
				}
			}
			w, err := a.dialWebhooks()
			if err != nil {
				return err
			}
			defer w.Close()
			id := args[0]
			cctx, cancel := w.call(ctx)
			defer cancel()
			resp, err := w.hooks.UpdateEndpoint(cctx, &mailbusv1.UpdateEndpointRequest{
				Endpoint:      &mailbusv1.WebhookEndpoint{Id: id, Secret: secret},
				UpdateMask:    &fieldmaskpb.FieldMask{Paths: []string{"secret"}},
				SecretOverlap: durationpb.New(overlap),
			})
			if isNotFound(err) {
				return noWebhook(id)
			}
			if err != nil {
				return w.explain("rotate the secret of webhook "+id, err)
			}
			if a.json {
				return printJSON(a.io.Out, resp)
			}
			if resp.GeneratedSecret != "" {
				fmt.Fprintln(a.io.Out, resp.GeneratedSecret)
				fmt.Fprintln(a.io.Err, "The line above is the new signing secret, shown only now.")
			}
			if t := resp.GetEndpoint().GetPreviousSecretExpireTime(); t != nil {
				fmt.Fprintf(a.io.Err, "Webhook %s has a new secret; the old one signs too until %s.\n", id, formatTime(t))
			} else {
				fmt.Fprintf(a.io.Err, "Webhook %s has a new secret; the old one no longer signs.\n", id)
			}
			return nil
		}),
	}
	fl := c.Flags()
	fl.StringVar(&secretFile, "secret-file", "", "read the new signing secret from this private file (first line); default a new secret, printed once")
	fl.DurationVar(&overlap, "overlap", 24*time.Hour, "how long the old secret keeps signing beside the new one (0 to 168h)")
	return c
}
