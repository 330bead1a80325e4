package webhooks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/webhooksig"
)

// Headers of every webhook request besides Content-Type and
// webhooksig.Header.
const (
	HeaderEventID   = "Mailbus-Event-Id"
	HeaderEventKind = "Mailbus-Event-Kind"
	// KindTest is the kind of the event SendTestEvent sends (no payload).
	KindTest = "webhook.test"
)

// maxAnswerBytes is how much of an answer's body is read (and dropped),
// so that the connection can be reused.
const maxAnswerBytes = 64 << 10

// newHTTPClient returns the client of every POST: no proxy (it would hide
// the address dialed), no redirects (a 3xx answer is a failed attempt), a
// timeout per request, and unless allowPrivate a dialer that refuses
// addresses that are not public.
func newHTTPClient(allowPrivate bool, timeout time.Duration) *http.Client {
	d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		d.Control = dialControl
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// encodePayload is the JSON body of one webhook request.
func encodePayload(p *mailbusv1.WebhookPayload) ([]byte, error) {
	b, err := protojson.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("webhooks: encode payload: %w", err)
	}
	return b, nil
}

// post sends one signed request and returns the attempt: ok is a 2xx
// answer; anything else (another status, a refused connection, a timeout,
// a refused address) is a failed attempt with its reason.
func post(ctx context.Context, client *http.Client, url string, body []byte, eventID, kind string, secrets [][]byte) attemptRecord {
	start := time.Now()
	a := attemptRecord{Time: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		a.Error = err.Error()
		return a
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "mailbus-webhooks")
	req.Header.Set(HeaderEventID, eventID)
	req.Header.Set(HeaderEventKind, kind)
	req.Header.Set(webhooksig.Header, webhooksig.Value(start, body, secrets...))
	resp, err := client.Do(req)
	if err != nil {
		a.Duration = time.Since(start)
		a.Error = err.Error()
		return a
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	resp.Body.Close()
	a.Duration = time.Since(start)
	a.HTTPStatus = resp.StatusCode
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		a.Error = fmt.Sprintf("status %d", resp.StatusCode)
	}
	return a
}

func (a attemptRecord) ok() bool { return a.Error == "" && a.HTTPStatus >= 200 && a.HTTPStatus <= 299 }
