package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func (a *app) webhookListCommand() *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List the webhook endpoints (never their secrets)",
		Example: "  mailbus webhook list\n  mailbus webhook list --json | jq -r .url",
		Args:    noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			w, err := a.dialWebhooks()
			if err != nil {
				return err
			}
			defer w.Close()
			eps, err := w.allEndpoints(ctx)
			if err != nil {
				return err
			}
			if a.json {
				for _, ep := range eps {
					if err := printJSON(a.io.Out, ep); err != nil {
						return err
					}
				}
				return nil
			}
			return printEndpoints(a, eps)
		}),
	}
}

// allEndpoints pages through the endpoints.
func (w *webhookClient) allEndpoints(ctx context.Context) ([]*mailbusv1.WebhookEndpoint, error) {
	var out []*mailbusv1.WebhookEndpoint
	token := ""
	for {
		cctx, cancel := w.call(ctx)
		resp, err := w.hooks.ListEndpoints(cctx, &mailbusv1.ListEndpointsRequest{PageSize: 1000, PageToken: token})
		cancel()
		if err != nil {
			return nil, w.explain("list webhooks", err)
		}
		out = append(out, resp.Endpoints...)
		if resp.NextPageToken == "" || len(resp.Endpoints) == 0 {
			return out, nil
		}
		token = resp.NextPageToken
	}
}

func printEndpoints(a *app, eps []*mailbusv1.WebhookEndpoint) error {
	if len(eps) == 0 {
		fmt.Fprintf(a.io.Err, "No webhooks. Add one: %s webhook add --url URL\n", a.io.Program)
		return nil
	}
	t := newTable(a.io.Out, "ID", "URL", "ACCOUNTS", "EVENTS", "INCLUDE", "STATUS", "CREATED", "DESCRIPTION")
	for _, ep := range eps {
		var include []string
		for _, inc := range ep.Include {
			include = append(include, includeName(inc))
		}
		st := endpointStatusName(ep.Status)
		if ep.PreviousSecretExpireTime != nil {
			st += ", old secret until " + formatTime(ep.PreviousSecretExpireTime)
		}
		t.row(ep.Id, ep.Url, listOrAll(ep.AccountIds), listOrAll(ep.EventKinds), listOrNone(include), st, formatTime(ep.CreateTime), ep.Description)
	}
	return t.flush()
}

func (a *app) webhookRemoveCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "remove ID...",
		Short: "Remove webhook endpoints, with their pending deliveries and delivery records",
		Long: `Remove webhook endpoints: nothing more is sent to them, and their pending
deliveries and delivery records are dropped.`,
		Example: "  mailbus webhook remove 7f3a9c0d",
		Args:    minArgs(1, "webhook id (see `mailbus webhook list`)"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			w, err := a.dialWebhooks()
			if err != nil {
				return err
			}
			defer w.Close()
			for _, id := range args {
				cctx, cancel := w.call(ctx)
				_, err := w.hooks.DeleteEndpoint(cctx, &mailbusv1.DeleteEndpointRequest{EndpointId: id})
				cancel()
				if isNotFound(err) {
					return noWebhook(id)
				}
				if err != nil {
					return w.explain("remove webhook "+id, err)
				}
				fmt.Fprintf(a.io.Out, "Removed webhook %s\n", id)
			}
			return nil
		}),
	}
}
