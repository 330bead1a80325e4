package cli

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestWebhookUsageErrors: every wrong or missing argument of the webhook
// commands exits 2 with a message naming it, before any server is asked
// (the server address is closed).
func TestWebhookUsageErrors(t *testing.T) {
	dir := t.TempDir()
	open := filepath.Join(dir, "open-secret")
	if err := os.WriteFile(open, []byte("0123456789abcdef0123\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o644); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MAILBUS_SERVER": closedAddr(t), "MAILBUS_TOKEN": testToken(t)}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"webhook"}, "missing command: one of add, deliveries, list, redeliver, remove, rotate-secret, test"},
		{[]string{"webhook", "nosuch"}, `unknown command "nosuch" for "mailbus webhook"`},
		{[]string{"webhook", "add"}, "missing --url"},
		{[]string{"webhook", "add", "--url", "crm.example.com/hook"}, "want an http:// or https:// URL"},
		{[]string{"webhook", "add", "--url", "https://crm.example.com/", "--event", "message"}, `--event "message": want one of message.created`},
		{[]string{"webhook", "add", "--url", "https://crm.example.com/", "--include", "text,body"}, `--include "body"`},
		{[]string{"webhook", "add", "--url", "https://crm.example.com/", "--secret-file", filepath.Join(dir, "missing")}, "no such file"},
		{[]string{"webhook", "add", "--url", "https://crm.example.com/", "--secret-file", open}, "chmod 600"},
		{[]string{"webhook", "add", "--url", "https://crm.example.com/", "extra"}, `unexpected argument "extra"`},
		{[]string{"webhook", "list", "x"}, `unexpected argument "x"`},
		{[]string{"webhook", "remove"}, "missing webhook id"},
		{[]string{"webhook", "test"}, "missing webhook id"},
		{[]string{"webhook", "test", "a", "b"}, `unexpected argument "b"`},
		{[]string{"webhook", "deliveries"}, "missing webhook id"},
		{[]string{"webhook", "deliveries", "a", "--status", "failed"}, `--status "failed": want pending, delivered, dead-lettered or all`},
		{[]string{"webhook", "deliveries", "a", "--limit", "-1"}, "--limit -1"},
		{[]string{"webhook", "redeliver", "a"}, "missing webhook id and delivery id"},
		{[]string{"webhook", "rotate-secret"}, "missing webhook id"},
		{[]string{"webhook", "rotate-secret", "a", "b"}, `unexpected argument "b"`},
		{[]string{"webhook", "rotate-secret", "a", "--overlap", "200h"}, "--overlap 200h0m0s: want 0 to 168h0m0s"},
		{[]string{"webhook", "rotate-secret", "a", "--overlap", "-1s"}, "--overlap -1s: want 0 to"},
		{[]string{"webhook", "rotate-secret", "a", "--secret-file", open}, "chmod 600"},
	} {
		code, out, errOut := run(t, env, tc.args...)
		if code != ExitUsage || !strings.Contains(errOut, tc.want) || !strings.Contains(errOut, "Usage: mailbus webhook") {
			t.Errorf("%q: exit %d, want %d with %q and the usage line:\n%s%s", tc.args, code, ExitUsage, tc.want, out, errOut)
		}
	}
}

// testToken is a token of the right shape that no store knows.
func testToken(t *testing.T) string {
	t.Helper()
	tok, _, err := apitoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// closedAddr is an address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// TestWebhookUnreachable: the webhooks service is asked where
// --webhooks-server says, and an error names that address.
func TestWebhookUnreachable(t *testing.T) {
	store, hooks, tok := closedAddr(t), closedAddr(t), testToken(t)
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"store", map[string]string{"MAILBUS_SERVER": store, "MAILBUS_TOKEN": tok}, "cannot reach the mailbus store at " + store},
		{"own", map[string]string{"MAILBUS_SERVER": store, "MAILBUS_TOKEN": tok, webhooksServerEnv: hooks}, "cannot reach the webhooks service at " + hooks},
	} {
		code, _, errOut := run(t, tc.env, "webhook", "list")
		if code != ExitError || !strings.Contains(errOut, "list webhooks: "+tc.want) {
			t.Errorf("%s: exit %d, want %d with %q: %s", tc.name, code, ExitError, tc.want, errOut)
		}
	}
}

// TestWebhookExplain: each status the webhooks service answers with
// becomes a message that names the service, its address and what to do.
func TestWebhookExplain(t *testing.T) {
	bad, err := status.New(codes.InvalidArgument, "invalid endpoint").WithDetails(&errdetails.BadRequest{
		FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: "url", Description: "127.0.0.1 is a loopback address; the service allows private webhooks only with --allow-private-webhooks"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	a := &app{server: "127.0.0.1:7400", timeout: 3 * time.Second, tokenSource: "from admin.token"}
	store := &webhookClient{client: &client{app: a}, addr: a.server}
	own := &webhookClient{client: &client{app: a}, addr: "10.0.0.5:7430"}
	for _, tc := range []struct {
		name string
		w    *webhookClient
		err  error
		want []string
	}{
		{"unimplemented", store, status.Error(codes.Unimplemented, "unknown service mailbus.v1.WebhookService"),
			[]string{"add webhook: the server at 127.0.0.1:7400 does not serve webhooks", "--webhooks-server (MAILBUS_WEBHOOKS_SERVER)"}},
		{"private URL", store, bad.Err(),
			[]string{"add webhook: the webhooks service refused the request: url: 127.0.0.1 is a loopback address", "--allow-private-webhooks"}},
		{"plain invalid", store, status.Error(codes.InvalidArgument, "secret: want at least 16 octets"),
			[]string{"the webhooks service refused the request: secret: want at least 16 octets"}},
		{"unauthenticated", own, status.Error(codes.Unauthenticated, "unknown token"),
			[]string{"the webhooks service at 10.0.0.5:7430 refused the API token (unknown token; from admin.token)", "admin token"}},
		{"permission", store, status.Error(codes.PermissionDenied, "admin tokens only"),
			[]string{"may not manage webhooks: admin tokens only"}},
		{"deadline", own, status.Error(codes.DeadlineExceeded, "context deadline exceeded"),
			[]string{"the webhooks service at 10.0.0.5:7430 did not answer within 3s"}},
		{"other", store, errors.New("boom"), []string{"add webhook: boom"}},
	} {
		got := tc.w.explain("add webhook", tc.err).Error()
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tc.name, got, w)
			}
		}
		if strings.Contains(got, "rpc error") {
			t.Errorf("%s: gRPC's wording in %q", tc.name, got)
		}
	}
	if err := store.explain("x", status.Error(codes.Canceled, "")); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled: %v", err)
	}
}

func TestWebhookTables(t *testing.T) {
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	var out, errOut bytes.Buffer
	a := &app{io: IO{Out: &out, Err: &errOut, Program: "mailbus"}}
	if err := printEndpoints(a, []*mailbusv1.WebhookEndpoint{
		{Id: "e1", Url: "https://crm.example.com/h", AccountIds: []string{"1", "2"}, EventKinds: []string{"message.created"},
			Include:    []mailbusv1.WebhookInclude{mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_TEXT, mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_ATTACHMENTS},
			CreateTime: timestamppb.New(now), Description: "crm\nx"},
		{Id: "e2", Url: "https://t.example.com/", Status: mailbusv1.WebhookEndpointStatus_WEBHOOK_ENDPOINT_STATUS_PAUSED},
	}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("want a header and 2 rows:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"ID", "URL", "ACCOUNTS", "EVENTS", "INCLUDE", "STATUS"},
		{"e1", "https://crm.example.com/h", "1,2", "message.created", "text,attachments", "active", "crm x"},
		{"e2", "https://t.example.com/", "all", "all", "none", "paused"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}

	out.Reset()
	attempt := func(ago time.Duration, code int32, errText string) *mailbusv1.WebhookAttempt {
		return &mailbusv1.WebhookAttempt{Time: timestamppb.New(now.Add(-ago)), HttpStatus: code, Error: errText, Duration: durationpb.New(time.Millisecond)}
	}
	if err := printDeliveries(a, []*mailbusv1.WebhookDelivery{
		{Id: "3", EventId: "ev3", EventKind: "message.created", AccountId: "1", Status: mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING,
			Attempts: []*mailbusv1.WebhookAttempt{attempt(90*time.Second, 0, "connection refused")}, NextAttemptTime: timestamppb.New(now.Add(time.Minute))},
		{Id: "2", EventId: "ev2", EventKind: "message.updated", AccountId: "1", Status: mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED,
			Attempts: []*mailbusv1.WebhookAttempt{attempt(time.Hour, 503, "status 503"), attempt(30*time.Minute, 500, "status 500")}},
		{Id: "1", EventId: "ev1", EventKind: "message.created", AccountId: "2", Status: mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED,
			Attempts: []*mailbusv1.WebhookAttempt{attempt(2*time.Hour, 204, "")}},
	}, now); err != nil {
		t.Fatal(err)
	}
	lines = strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want a header and 3 rows:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"DELIVERY", "EVENT", "KIND", "ACCOUNT", "STATUS", "ATTEMPTS", "RESULT", "NEXT"},
		{"3", "ev3", "pending", " 1 ", "1m ago", "connection refused"},
		{"2", "ev2", "dead-lettered", " 2 ", "30m ago", "500: status 500"},
		{"1", "ev1", "delivered", "2h ago", "204"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	out.Reset()
	errOut.Reset()
	if err := printDeliveries(a, nil, now); err != nil || out.Len() != 0 || !strings.Contains(errOut.String(), "No deliveries") {
		t.Errorf("no deliveries: %v, stdout %q, stderr %q", err, out.String(), errOut.String())
	}
}

func TestParseDeliveryStatus(t *testing.T) {
	for in, want := range map[string]mailbusv1.WebhookDeliveryStatus{
		"":              mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_UNSPECIFIED,
		"all":           mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_UNSPECIFIED,
		"Pending":       mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_PENDING,
		"delivered":     mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED,
		"dead-lettered": mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED,
		"dead":          mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DEAD_LETTERED,
	} {
		got, err := parseDeliveryStatus(in)
		if err != nil || got != want {
			t.Errorf("parseDeliveryStatus(%q) = %v, %v; want %v", in, got, err, want)
		}
		// What the table shows is read back.
		if name := deliveryStatusName(want); want != 0 {
			if back, err := parseDeliveryStatus(name); err != nil || back != want {
				t.Errorf("%q does not read back: %v, %v", name, back, err)
			}
		}
	}
}
