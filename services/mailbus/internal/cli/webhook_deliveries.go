package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func (a *app) webhookDeliveriesCommand() *cobra.Command {
	var (
		statusName string
		limit      int
	)
	c := &cobra.Command{
		Use:   "deliveries ID [--status pending|delivered|dead-lettered] [--limit 50]",
		Short: "List a webhook's deliveries, newest first, with their last attempt",
		Long: `List the deliveries of a webhook endpoint, newest first: each is one event
on its way to the endpoint, pending (being tried, or waiting for its next
attempt), delivered (answered 2xx) or dead-lettered (not accepted within
the retry window; 'mailbus webhook redeliver' sends it again). The table
shows the last attempt; --json shows every attempt.`,
		Example: `  mailbus webhook deliveries 7f3a9c0d
  mailbus webhook deliveries 7f3a9c0d --status dead-lettered --limit 0
  mailbus webhook deliveries 7f3a9c0d --json | jq '.attempts[-1]'`,
		Args: exactArgs(1, "webhook id (see `mailbus webhook list`)"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			st, err := parseDeliveryStatus(statusName)
			if err != nil {
				return err
			}
			if limit < 0 {
				return usagef("--limit %d: want 0 (all) or more", limit)
			}
			w, err := a.dialWebhooks()
			if err != nil {
				return err
			}
			defer w.Close()
			ds, more, err := w.deliveries(ctx, args[0], st, limit)
			if err != nil {
				return err
			}
			if a.json {
				for _, d := range ds {
					if err := printJSON(a.io.Out, d); err != nil {
						return err
					}
				}
				return nil
			}
			if err := printDeliveries(a, ds, time.Now()); err != nil {
				return err
			}
			if more {
				fmt.Fprintf(a.io.Out, "(the newest %d; --limit 0 lists all)\n", limit)
			}
			return nil
		}),
	}
	c.Flags().StringVar(&statusName, "status", "all", "only deliveries in this state: pending, delivered, dead-lettered or all")
	c.Flags().IntVarP(&limit, "limit", "n", 50, "at most this many deliveries; 0 for all")
	return c
}

// deliveries pages through an endpoint's deliveries up to limit (0: all);
// more reports that there are more.
func (w *webhookClient) deliveries(ctx context.Context, id string, st mailbusv1.WebhookDeliveryStatus, limit int) (out []*mailbusv1.WebhookDelivery, more bool, err error) {
	token := ""
	for {
		page := uint32(1000)
		if limit > 0 {
			page = uint32(min(limit-len(out), 1000))
		}
		cctx, cancel := w.call(ctx)
		resp, err := w.hooks.ListDeliveries(cctx, &mailbusv1.ListDeliveriesRequest{EndpointId: id, Status: st, PageSize: page, PageToken: token})
		cancel()
		if isNotFound(err) {
			return nil, false, noWebhook(id)
		}
		if err != nil {
			return nil, false, w.explain("deliveries of webhook "+id, err)
		}
		out = append(out, resp.Deliveries...)
		if resp.NextPageToken == "" || len(resp.Deliveries) == 0 {
			return out, false, nil
		}
		if limit > 0 && len(out) >= limit {
			return out[:limit], true, nil
		}
		token = resp.NextPageToken
	}
}

func printDeliveries(a *app, ds []*mailbusv1.WebhookDelivery, now time.Time) error {
	if len(ds) == 0 {
		fmt.Fprintln(a.io.Err, "No deliveries (yet): events published after the webhook was added show here.")
		return nil
	}
	t := newTable(a.io.Out, "DELIVERY", "EVENT", "KIND", "ACCOUNT", "STATUS", "ATTEMPTS", "LAST ATTEMPT", "RESULT", "NEXT")
	for _, d := range ds {
		var last *mailbusv1.WebhookAttempt
		lastTime := "-"
		if n := len(d.Attempts); n > 0 {
			last = d.Attempts[n-1]
			lastTime = ago(last.Time, now)
		}
		next := "-"
		if d.Status == mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING && d.NextAttemptTime != nil {
			next = formatTime(d.NextAttemptTime)
		}
		t.row(d.Id, d.EventId, d.EventKind, d.AccountId, deliveryStatusName(d.Status), fmt.Sprint(len(d.Attempts)), lastTime, attemptResult(last), next)
	}
	return t.flush()
}

func (a *app) webhookRedeliverCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "redeliver ID DELIVERY",
		Short: "Send a delivery's event again, with a new retry window",
		Long: `Send the event of one delivery (see 'mailbus webhook deliveries') to the
endpoint again, whatever its state: a dead-lettered one, or one the
receiver lost. It is pending again, with a new retry window, and its new
attempts are added to the same delivery.`,
		Example: "  mailbus webhook redeliver 7f3a9c0d 42",
		Args:    exactArgs(2, "webhook id and delivery id (see `mailbus webhook deliveries ID`)"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			id, delivery := args[0], args[1]
			w, err := a.dialWebhooks()
			if err != nil {
				return err
			}
			defer w.Close()
			cctx, cancel := w.call(ctx)
			defer cancel()
			resp, err := w.hooks.Redeliver(cctx, &mailbusv1.RedeliverRequest{EndpointId: id, DeliveryId: delivery})
			if isNotFound(err) {
				return fmt.Errorf("no delivery %q of webhook %q: `mailbus webhook deliveries %s` shows them", delivery, id, id)
			}
			if err != nil {
				return w.explain("redeliver "+delivery+" of webhook "+id, err)
			}
			if a.json {
				return printJSON(a.io.Out, resp.Delivery)
			}
			d := resp.Delivery
			fmt.Fprintf(a.io.Out, "Redelivering %s (event %s, %s) to webhook %s: %s\n", d.Id, d.EventId, d.EventKind, id, deliveryStatusName(d.Status))
			return nil
		}),
	}
}

func (a *app) webhookTestCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "test ID",
		Short: "POST a test event to a webhook now, once, and show the answer",
		Long: `POST a test event (kind webhook.test, signed like every event) to the
endpoint once, now, without retries, and show how it answered. The exit
code is 1 when the endpoint did not answer 2xx.`,
		Example: "  mailbus webhook test 7f3a9c0d",
		Args:    exactArgs(1, "webhook id (see `mailbus webhook list`)"),
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			id := args[0]
			w, err := a.dialWebhooks()
			if err != nil {
				return err
			}
			defer w.Close()
			cctx, cancel := w.call(ctx)
			defer cancel()
			resp, err := w.hooks.SendTestEvent(cctx, &mailbusv1.SendTestEventRequest{EndpointId: id})
			if isNotFound(err) {
				return noWebhook(id)
			}
			if err != nil {
				return w.explain("test webhook "+id, err)
			}
			if a.json {
				if err := printJSON(a.io.Out, resp); err != nil {
					return err
				}
			} else {
				at := resp.Attempt
				fmt.Fprintf(a.io.Out, "Test event %s to webhook %s: %s in %s\n", resp.EventId, id, attemptResult(at), at.GetDuration().AsDuration().Round(time.Millisecond))
			}
			if !accepted(resp.Attempt) {
				return fmt.Errorf("%w (%s); `mailbus webhook list` shows its URL", errTestFailed, attemptResult(resp.Attempt))
			}
			return nil
		}),
	}
}

// accepted reports whether an attempt was answered 2xx.
func accepted(at *mailbusv1.WebhookAttempt) bool {
	return at != nil && at.HttpStatus >= 200 && at.HttpStatus < 300 && at.Error == ""
}
