package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// webhooksServerEnv is the variable that defaults --webhooks-server.
const webhooksServerEnv = "MAILBUS_WEBHOOKS_SERVER"

func (a *app) webhookCommand() *cobra.Command {
	g := group("webhook", "Send events to HTTP endpoints, signed and retried (admin token needed)",
		`  mailbus webhook add --url https://crm.example.com/hooks/mailbus --account work \
      --event message.created --include text,attachments
  mailbus webhook list
  mailbus webhook test 7f3a9c0d
  mailbus webhook deliveries 7f3a9c0d --status dead-lettered
  mailbus webhook redeliver 7f3a9c0d 42
  mailbus webhook rotate-secret 7f3a9c0d --overlap 24h
  mailbus webhook remove 7f3a9c0d`,
		a.webhookAddCommand(), a.webhookListCommand(), a.webhookRemoveCommand(),
		a.webhookTestCommand(), a.webhookDeliveriesCommand(), a.webhookRedeliverCommand(),
		a.webhookRotateSecretCommand())
	g.Long = `Webhooks deliver the events of the accounts (message.created and the
other kinds of 'mailbus watch') to HTTP endpoints: each event is POSTed as
JSON, signed with the endpoint's secret in the Mailbus-Signature header,
and retried with backoff until the endpoint answers 2xx or the retry window
(24 h by default) passes. README "Webhooks" shows a receiver that checks
the signature.

The webhooks service answers these commands: inside mailbus serve on the
store's address (--server), or mailbus-webhooks on its own address
(--webhooks-server).`
	a.stringVar(g.PersistentFlags(), &a.webhooksServer, "webhooks-server", webhooksServerEnv, "",
		"the gRPC address (host:port) of mailbus-webhooks, when it runs on its own; default --server (mailbus serve serves webhooks on the store's address)")
	return g
}

// webhookClient is a connection to the webhooks service, and to the store
// for the names of accounts.
type webhookClient struct {
	*client
	hooks mailbusv1.WebhookServiceClient
	// addr is the webhooks service's address, for messages.
	addr string
	// own is the connection to the webhooks service when it is not the
	// store's.
	own *grpc.ClientConn
}

// dialWebhooks connects to the webhooks service (--webhooks-server, else
// --server) and the store.
func (a *app) dialWebhooks() (*webhookClient, error) {
	c, err := a.dial()
	if err != nil {
		return nil, err
	}
	w := &webhookClient{client: c, addr: a.server, hooks: mailbusv1.NewWebhookServiceClient(c.conn)}
	if addr := strings.TrimSpace(a.webhooksServer); addr != "" && addr != a.server {
		token, err := a.resolveToken()
		if err != nil {
			c.Close()
			return nil, err
		}
		if w.own, err = a.connect(addr, "--webhooks-server", token); err != nil {
			c.Close()
			return nil, err
		}
		w.addr, w.hooks = addr, mailbusv1.NewWebhookServiceClient(w.own)
	}
	return w, nil
}

func (w *webhookClient) Close() {
	if w.own != nil {
		w.own.Close()
	}
	w.client.Close()
}

// explain turns an error of the webhooks service into one a person can
// act on, naming the service and its address; what is what the command
// was doing ("add webhook"). Other errors come back wrapped in what.
func (w *webhookClient) explain(what string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%s: %w", what, err)
	}
	msg := st.Message()
	switch st.Code() {
	case codes.Unimplemented:
		return fmt.Errorf("%s: the server at %s does not serve webhooks (%s).\n"+
			"  mailbus serve serves them on the store's address; a store run on its own does not:\n"+
			"  point --webhooks-server (%s) at mailbus-webhooks", what, w.addr, msg, webhooksServerEnv)
	case codes.Unavailable:
		if w.own == nil {
			// The store's address: the store's explanation fits.
			return fmt.Errorf("%s: %w", what, w.app.explain(err))
		}
		return fmt.Errorf("%s: cannot reach the webhooks service at %s (%s).\n"+
			"  Is mailbus-webhooks running there? --webhooks-server (%s) names its address", what, w.addr, dialReason(msg), webhooksServerEnv)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s: the webhooks service at %s did not answer within %s (--timeout sets the deadline)", what, w.addr, w.app.timeout)
	case codes.Unauthenticated:
		return fmt.Errorf("%s: the webhooks service at %s refused the API token (%s; %s).\n"+
			"  Webhooks need an admin token: --token, MAILBUS_TOKEN or --token-file (<data>/admin.token of mailbus serve)", what, w.addr, msg, w.app.tokenSource)
	case codes.PermissionDenied:
		return fmt.Errorf("%s: the API token (%s) may not manage webhooks: %s.\n"+
			"  Webhooks need an admin token (<data>/admin.token of mailbus serve)", what, w.app.tokenSource, msg)
	case codes.InvalidArgument, codes.FailedPrecondition:
		return fmt.Errorf("%s: the webhooks service refused the request: %s", what, violations(st))
	case codes.Internal:
		return fmt.Errorf("%s: the webhooks service failed: %s", what, msg)
	case codes.Canceled:
		return context.Canceled
	}
	return fmt.Errorf("%s: %s", what, msg)
}

// violations is a status's message, or its field violations when it has
// them.
func violations(st *status.Status) string {
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
			var parts []string
			for _, v := range br.FieldViolations {
				parts = append(parts, v.Field+": "+v.Description)
			}
			return strings.Join(parts, "; ")
		}
	}
	return st.Message()
}

// notFound is the error of an endpoint id the service does not know.
func noWebhook(id string) error {
	return fmt.Errorf("no webhook %q: `mailbus webhook list` shows the ids", id)
}

// errTestFailed is returned when the test event was not answered 2xx.
var errTestFailed = errors.New("the endpoint did not accept the test event")

// webhookIncludeNames maps --include's words to the API's values.
var webhookIncludeNames = map[string]mailbusv1.WebhookInclude{
	includeText:        mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_TEXT,
	includeHTML:        mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_HTML,
	includeHeaders:     mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_HEADERS,
	includeAttachments: mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_ATTACHMENTS,
}

func includeName(inc mailbusv1.WebhookInclude) string {
	return strings.ToLower(strings.TrimPrefix(inc.String(), "WEBHOOK_INCLUDE_"))
}

func endpointStatusName(s mailbusv1.WebhookEndpointStatus) string {
	if s == mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_UNSPECIFIED {
		return "active"
	}
	return strings.ToLower(strings.TrimPrefix(s.String(), "WEBHOOK_ENDPOINT_STATUS_"))
}

func deliveryStatusName(s mailbusv1.WebhookDeliveryStatus) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s.String(), "WEBHOOK_DELIVERY_STATUS_")), "_", "-")
}

// parseDeliveryStatus reads --status of webhook deliveries.
func parseDeliveryStatus(s string) (mailbusv1.WebhookDeliveryStatus, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "all":
		return mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_UNSPECIFIED, nil
	case "pending":
		return mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING, nil
	case "delivered":
		return mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED, nil
	case "dead-lettered", "dead", "dead-letter", "dead_lettered":
		return mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED, nil
	}
	return 0, usagef("--status %q: want pending, delivered, dead-lettered or all", s)
}

// listOrAll is a comma-separated list, or "all" when empty.
func listOrAll(items []string) string {
	if len(items) == 0 {
		return "all"
	}
	return strings.Join(items, ",")
}

// attemptResult says how an attempt ended: "200", "503: status 503",
// "connection refused".
func attemptResult(at *mailbusv1.WebhookAttempt) string {
	if at == nil {
		return "-"
	}
	switch {
	case at.HttpStatus != 0 && at.Error == "":
		return fmt.Sprint(at.HttpStatus)
	case at.HttpStatus != 0:
		return fmt.Sprintf("%d: %s", at.HttpStatus, at.Error)
	case at.Error != "":
		return at.Error
	}
	return "no answer"
}
