package webhooks

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/store"
	"github.com/mailbus/mailbus/services/store/storetest"
)

// storeEnv is a store (SQLite) publishing to n, with its tokens.
type storeEnv struct {
	addr, admin, service string
}

func startStore(t *testing.T, n *natsServer) *storeEnv {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serviceToken, _, err := apitoken.Generate()
	if err != nil {
		t.Fatal(err)
	}
	adminFile := filepath.Join(t.TempDir(), "admin.token")
	addr, _ := storetest.Run(t, store.Config{
		AdminTokenFile: adminFile, ServiceToken: serviceToken, Listener: lis, MetricsListen: "-",
		NATSURL: n.url(), DataDir: filepath.Join(t.TempDir(), "data"), SecretKey: testKey,
		Logger: testLogger(t), Registry: prometheus.NewRegistry(),
	})
	e := &storeEnv{addr: addr, service: serviceToken}
	if e.admin, err = apitoken.ReadFile(adminFile); err != nil {
		t.Fatal(err)
	}
	return e
}

func dial(t *testing.T, addr, token string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(token))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

const testMail = "From: Ann <ann@example.com>\r\nTo: bob@example.com\r\nSubject: Quarterly\r\n report\r\n" +
	"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b1\r\n\r\n" +
	"--b1\r\nContent-Type: multipart/alternative; boundary=b2\r\n\r\n" +
	"--b2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHällo Bob, the figures are attached.\r\n" +
	"--b2\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>Hällo Bob, the figures are attached.</p>\r\n--b2--\r\n" +
	"--b1\r\nContent-Type: application/pdf\r\nContent-Disposition: attachment; filename=report.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n"

// TestWithTheStore: a message appended in a real store reaches the
// endpoint with the content asked for (text and HTML cut at the cap,
// headers, the attachment list), fetched with the service token; the
// service's own port admits admin tokens only, checked with the store.
func TestWithTheStore(t *testing.T) {
	n := startNATS(t)
	st := startStore(t, n)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startService(t, n, func(c *Config) { c.StoreAddr, c.Token, c.Listener = st.addr, st.service, lis })
	hooks := func(token string) mailbusv1.WebhookServiceClient {
		return mailbusv1.NewWebhookServiceClient(dial(t, lis.Addr().String(), token))
	}
	rcv := newReceiver(t, testSecret, nil)
	create := &mailbusv1.CreateEndpointRequest{Endpoint: &mailbusv1.WebhookEndpoint{Url: rcv.url(), Secret: testSecret, EventKinds: []string{"message.created"}, BodyCapBytes: 6,
		Include: []mailbusv1.WebhookInclude{mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_TEXT, mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_HTML,
			mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_HEADERS, mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_ATTACHMENTS}}}
	for _, tc := range []struct {
		name, token string
		want        codes.Code
	}{
		{"no token", "", codes.Unauthenticated},
		{"unknown token", "mbt_0123456789abcdef_bm90IGEgcmVhbCB0b2tlbg", codes.Unauthenticated},
		{"service token", st.service, codes.PermissionDenied},
	} {
		if _, err := hooks(tc.token).CreateEndpoint(callCtx(t), create); status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := hooks(st.service).ListEndpoints(callCtx(t), &mailbusv1.ListEndpointsRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ListEndpoints with the service token: %v", err)
	}
	admin := hooks(st.admin)
	ep, err := admin.CreateEndpoint(callCtx(t), create)
	if err != nil {
		t.Fatal(err)
	}
	if list, err := admin.ListEndpoints(callCtx(t), &mailbusv1.ListEndpointsRequest{}); err != nil || len(list.Endpoints) != 1 || list.Endpoints[0].Id != ep.Endpoint.Id {
		t.Fatalf("ListEndpoints: %v %v", list, err)
	}

	storeAdmin := dial(t, st.addr, st.admin)
	acct, err := mailbusv1.NewAccountServiceClient(storeAdmin).CreateAccount(callCtx(t), &mailbusv1.CreateAccountRequest{Account: &mailbusv1.Account{
		Name: "work", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP, Host: "imap.example.com", Port: 993,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "ann", Secret: "pw"}})
	if err != nil {
		t.Fatal(err)
	}
	mailboxes := mailbusv1.NewMailboxServiceClient(storeAdmin)
	mb, err := mailboxes.CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: acct.Account.Id, Name: "Reports", DeviceId: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mailboxes.AppendMessage(callCtx(t), &mailbusv1.AppendMessageRequest{MailboxId: mb.Mailbox.Id, Raw: []byte(testMail), DeviceId: "test"}); err != nil {
		t.Fatal(err)
	}
	rcv.waitAccepted(t, 1)
	got := rcv.accepted()[0].payload
	c := got.GetContent()
	if got.GetKind() != "message.created" || got.GetEvent().GetAccountId() != acct.Account.Id || c.GetError() != "" {
		t.Fatalf("payload %v", got)
	}
	// "Hällo" is 6 octets: the cap keeps it whole, the next character not.
	if c.TextBody != "Hällo" || !c.TextTruncated || c.HtmlBody != "<p>Hä" || !c.HtmlTruncated {
		t.Errorf("bodies %q (%v), %q (%v)", c.TextBody, c.TextTruncated, c.HtmlBody, c.HtmlTruncated)
	}
	if len(c.Attachments) != 1 || c.Attachments[0].Filename != "report.pdf" || c.Attachments[0].ContentType != "application/pdf" || c.Attachments[0].PartId == "" {
		t.Errorf("attachments %v", c.Attachments)
	}
	var names []string
	subject := ""
	for _, h := range c.Headers {
		names = append(names, h.Name)
		if h.Name == "Subject" {
			subject = h.Value
		}
	}
	if strings.Join(names, ",") != "From,To,Subject,MIME-Version,Content-Type" || subject != "Quarterly report" {
		t.Errorf("headers %v", c.Headers)
	}
}
