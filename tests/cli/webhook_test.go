package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/webhooksig"
	"github.com/mailbus/mailbus/services/mailbus/demo"
)

// hookReceiver is a webhook endpoint as a backend would run one: it
// checks Mailbus-Signature with the endpoint's secret and keeps what it
// accepted; a request that fails the check is answered 401 and kept
// apart.
type hookReceiver struct {
	*httptest.Server

	mu       sync.Mutex
	secret   []byte
	accepted []hookRequest
	refused  []string
}

// hookRequest is a request the receiver accepted.
type hookRequest struct {
	kind, eventID string
	payload       *mailbusv1.WebhookPayload
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	h := &hookReceiver{}
	h.Server = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.Close)
	return h
}

func (h *hookReceiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	refuse := func(code int, why string) {
		h.refused = append(h.refused, why)
		http.Error(w, why, code)
	}
	if err := webhooksig.Verify(r.Header.Get(webhooksig.Header), body, h.secret, time.Now(), 0); err != nil {
		refuse(http.StatusUnauthorized, err.Error())
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		refuse(http.StatusUnsupportedMediaType, "Content-Type "+ct)
		return
	}
	p := &mailbusv1.WebhookPayload{}
	if err := protojson.Unmarshal(body, p); err != nil {
		refuse(http.StatusBadRequest, err.Error())
		return
	}
	h.accepted = append(h.accepted, hookRequest{kind: r.Header.Get("Mailbus-Event-Kind"), eventID: r.Header.Get("Mailbus-Event-Id"), payload: p})
	w.WriteHeader(http.StatusNoContent)
}

func (h *hookReceiver) setSecret(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.secret = []byte(s)
}

func (h *hookReceiver) got() (accepted []hookRequest, refused []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append(accepted, h.accepted...), append(refused, h.refused...)
}

// createdOf returns the accepted message.created requests of the message
// with Message-ID id.
func createdOf(reqs []hookRequest, id string) []hookRequest {
	var out []hookRequest
	for _, r := range reqs {
		if r.payload.GetEvent().GetMessageCreated().GetMessage().GetEnvelope().GetMessageId() == id {
			out = append(out, r)
		}
	}
	return out
}

// webhookMail is a new message with a text body and an attachment.
func webhookMail(messageID, text string) demo.Message {
	date := time.Now().UTC().Truncate(time.Second)
	raw := strings.Join([]string{
		"From: Maria Garcia <maria.garcia@northwind.example>",
		"To: Alex Demo <alex@demo.mailbus.test>",
		"Subject: Order 4711",
		"Date: " + date.Format(time.RFC1123Z),
		"Message-ID: <" + messageID + ">",
		"MIME-Version: 1.0",
		`Content-Type: multipart/mixed; boundary="b1"`,
		"",
		"--b1",
		"Content-Type: text/plain; charset=utf-8",
		"",
		text,
		"--b1",
		`Content-Type: application/pdf; name="order-4711.pdf"`,
		`Content-Disposition: attachment; filename="order-4711.pdf"`,
		"Content-Transfer-Encoding: base64",
		"",
		"JVBERi0xLjQKJcTl8uXrCg==",
		"--b1--",
		"",
	}, "\r\n")
	return demo.Message{Folder: "INBOX", Date: date, MessageID: messageID, Subject: "Order 4711", Raw: []byte(raw)}
}

// TestServeWebhookEndToEnd drives webhooks as a user would: mailbus serve
// with --allow-private-webhooks, a receiver on loopback that checks
// Mailbus-Signature with the secret `webhook add` printed, and new mail
// arriving upstream. The receiver gets one signed message.created with
// the text and the attachment list it asked for; `webhook deliveries`
// shows it delivered; `webhook redeliver` sends the same event again.
func TestServeWebhookEndToEnd(t *testing.T) {
	imapSrv, err := demo.StartIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer imapSrv.Close()
	c, _, _ := startServe(t, "--allow-private-webhooks")
	recv := newHookReceiver(t)

	c.env = append(c.env, "IMAP_PW="+demo.IMAPPassword)
	c.ok("account", "add", "--name", "mail", "--protocol", "imap", "--host", "127.0.0.1",
		"--port", fmt.Sprint(imapSrv.Addr().Port), "--security", "none", "--username", demo.IMAPUser, "--password-env", "IMAP_PW")
	waitIdle(t, c, "mail")

	r := c.ok("webhook", "add", "--url", recv.URL+"/hooks/mailbus", "--account", "mail",
		"--event", "message.created", "--include", "text,attachments")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("webhook add: want the id and the secret:\n%s", r)
	}
	id, secret := lines[0], lines[1]
	recv.setSecret(secret)
	if r := c.ok("webhook", "list"); !strings.Contains(r.stdout, id) || !strings.Contains(r.stdout, recv.URL+"/hooks/mailbus") {
		t.Fatalf("webhook list does not show the endpoint:\n%s", r)
	}

	const messageID, text = "order-4711@northwind.example", "Please ship order 4711 by Friday."
	if err := imapSrv.Deliver(webhookMail(messageID, text)); err != nil {
		t.Fatal(err)
	}
	var got hookRequest
	eventually(t, "the receiver accepts the message.created of the new mail", func() error {
		accepted, refused := recv.got()
		if len(refused) > 0 {
			t.Fatalf("the receiver refused requests: %q", refused)
		}
		created := createdOf(accepted, messageID)
		if len(created) == 0 {
			return fmt.Errorf("%d requests accepted, none for %s", len(accepted), messageID)
		}
		got = created[0]
		return nil
	})
	p := got.payload
	if got.kind != "message.created" || p.GetKind() != "message.created" || got.eventID == "" || got.eventID != p.GetEvent().GetId() {
		t.Errorf("headers kind %q, event id %q; payload kind %q, event id %q", got.kind, got.eventID, p.GetKind(), p.GetEvent().GetId())
	}
	if p.GetEndpointId() != id || p.GetEvent().GetAccountName() != "mail" || p.GetEvent().GetMailbox().GetName() != "INBOX" {
		t.Errorf("endpoint %q account %q mailbox %q; want %s, mail, INBOX", p.GetEndpointId(), p.GetEvent().GetAccountName(), p.GetEvent().GetMailbox().GetName(), id)
	}
	content := p.GetContent()
	if !strings.Contains(content.GetTextBody(), text) || content.GetHtmlBody() != "" || len(content.GetHeaders()) != 0 {
		t.Errorf("content: want the text %q only with the attachment list, got %v", text, content)
	}
	if atts := content.GetAttachments(); len(atts) != 1 || atts[0].GetFilename() != "order-4711.pdf" || atts[0].GetContentType() != "application/pdf" {
		t.Errorf("attachments %v, want order-4711.pdf (application/pdf)", atts)
	}

	// The delivery as the CLI lists it.
	var delivery *mailbusv1.WebhookDelivery
	eventually(t, "webhook deliveries shows the delivery delivered", func() error {
		ds := jsonLines(t, c.ok("webhook", "deliveries", id, "--json").stdout, func() *mailbusv1.WebhookDelivery { return &mailbusv1.WebhookDelivery{} })
		for _, d := range ds {
			if d.GetEventId() == got.eventID {
				if d.GetStatus() != mailbusv1.WebhookDeliveryStatus_WEBHOOK_DELIVERY_STATUS_DELIVERED {
					return fmt.Errorf("delivery %s: %s", d.GetId(), d.GetStatus())
				}
				delivery = d
				return nil
			}
		}
		return fmt.Errorf("no delivery of event %s in %d", got.eventID, len(ds))
	})
	if r := c.ok("webhook", "deliveries", id); !strings.Contains(r.stdout, delivery.GetId()) || !strings.Contains(r.stdout, "delivered") || !strings.Contains(r.stdout, "204") {
		t.Errorf("webhook deliveries, the table:\n%s", r)
	}

	// Redelivered on request: the same event once more.
	c.ok("webhook", "redeliver", id, delivery.GetId())
	eventually(t, "the redelivered event", func() error {
		accepted, _ := recv.got()
		if n := len(createdOf(accepted, messageID)); n < 2 {
			return fmt.Errorf("%d requests for %s", n, messageID)
		}
		return nil
	})
	accepted, refused := recv.got()
	created := createdOf(accepted, messageID)
	if len(created) != 2 || created[1].eventID != got.eventID || len(refused) > 0 {
		t.Errorf("after redeliver: %d requests for the message (want 2, the same event %s), refused %q", len(created), got.eventID, refused)
	}
	for _, a := range accepted {
		if a.kind != "message.created" {
			t.Errorf("the endpoint asked for message.created only and got %s", a.kind)
		}
	}

	c.ok("webhook", "remove", id)
	if r := c.ok("webhook", "list"); strings.Contains(r.stdout, id) {
		t.Errorf("removed, still listed:\n%s", r)
	}
}
