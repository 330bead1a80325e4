package webhooks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// maxHeaderBytes bounds the header section read for WEBHOOK_INCLUDE_HEADERS;
// a longer header is cut (the fields read so far are sent).
const maxHeaderBytes = 256 << 10

// errStoreUnavailable marks a content fetch that failed for a reason
// other than the message being gone: the attempt is retried.
var errStoreUnavailable = errors.New("webhooks: store unavailable")

// contentClient is what content fetching needs of the store.
type contentClient interface {
	GetMessage(ctx context.Context, in *mailbusv1.GetMessageRequest, opts ...grpc.CallOption) (*mailbusv1.GetMessageResponse, error)
	GetRawMessage(ctx context.Context, in *mailbusv1.GetRawMessageRequest, opts ...grpc.CallOption) (grpc.ServerStreamingClient[mailbusv1.GetRawMessageResponse], error)
}

// messageOf returns the message an event is about, for the kinds that
// carry one: message.created and message.updated.
func messageOf(e *mailbusv1.Event) string {
	switch p := e.GetPayload().(type) {
	case *mailbusv1.Event_MessageCreated:
		return p.MessageCreated.GetMessage().GetId()
	case *mailbusv1.Event_MessageUpdated:
		return p.MessageUpdated.GetMessage().GetId()
	}
	return ""
}

// fetchContent fetches what ep asked for about the message of e. It
// returns nil when there is nothing to add. A message that no longer
// exists gives content with Error set; any other store failure an error
// wrapping errStoreUnavailable, so that the attempt is retried.
func fetchContent(ctx context.Context, store contentClient, ep *endpointRecord, e *mailbusv1.Event) (*mailbusv1.WebhookContent, error) {
	id := messageOf(e)
	wantText, wantHTML := ep.includes(mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_TEXT), ep.includes(mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_HTML)
	wantHeaders, wantAttachments := ep.includes(mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_HEADERS), ep.includes(mailbusv1.WebhookInclude_WEBHOOK_INCLUDE_ATTACHMENTS)
	if id == "" || !(wantText || wantHTML || wantHeaders || wantAttachments) {
		return nil, nil
	}
	c := &mailbusv1.WebhookContent{}
	if store == nil {
		c.Error = "no store configured to fetch content from"
		return c, nil
	}
	if wantText || wantHTML || wantAttachments {
		resp, err := store.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: id})
		if status.Code(err) == codes.NotFound {
			c.Error = "message not found"
			return c, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: get message %s: %w", errStoreUnavailable, id, err)
		}
		m := resp.GetMessage()
		if wantText {
			c.TextBody, c.TextTruncated = capUTF8(m.GetTextBody(), ep.bodyCap())
		}
		if wantHTML {
			c.HtmlBody, c.HtmlTruncated = capUTF8(m.GetHtmlBody(), ep.bodyCap())
		}
		if wantAttachments {
			c.Attachments = m.GetAttachments()
		}
	}
	if wantHeaders {
		head, err := readHeader(ctx, store, id)
		if status.Code(err) == codes.NotFound {
			c.Error = "message not found"
			return c, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%w: get raw message %s: %w", errStoreUnavailable, id, err)
		}
		c.Headers = parseHeader(head)
	}
	return c, nil
}

// capUTF8 cuts s to at most n octets at a character boundary.
func capUTF8(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut], true
}

// readHeader streams the raw message until the end of its header section
// (at most maxHeaderBytes) and stops the stream.
func readHeader(ctx context.Context, store contentClient, id string) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when the header is complete
	stream, err := store.GetRawMessage(ctx, &mailbusv1.GetRawMessageRequest{MessageId: id})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	for buf.Len() < maxHeaderBytes {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		buf.Write(chunk.GetData())
		if end := headerEnd(buf.Bytes()); end >= 0 {
			return buf.Bytes()[:end], nil
		}
	}
	head := buf.Bytes()
	if len(head) > maxHeaderBytes {
		head = head[:maxHeaderBytes]
	}
	return head, nil
}

// headerEnd returns the length of the header section of raw (without the
// empty line), or -1 when raw holds no empty line yet.
func headerEnd(raw []byte) int {
	if bytes.HasPrefix(raw, []byte("\r\n")) || bytes.HasPrefix(raw, []byte("\n")) {
		return 0
	}
	crlf, lf := bytes.Index(raw, []byte("\r\n\r\n")), bytes.Index(raw, []byte("\n\n"))
	switch {
	case crlf >= 0 && (lf < 0 || crlf < lf):
		return crlf + 2
	case lf >= 0:
		return lf + 1
	}
	return -1
}

// parseHeader splits a header section into fields, in order, unfolding
// continuation lines; values are left undecoded (RFC 2047 words stay as
// sent). Lines that are not fields are skipped.
func parseHeader(head []byte) []*mailbusv1.WebhookHeader {
	var out []*mailbusv1.WebhookHeader
	for line := range strings.SplitSeq(strings.ReplaceAll(string(head), "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			last := out[len(out)-1]
			last.Value += " " + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			continue
		}
		out = append(out, &mailbusv1.WebhookHeader{Name: name, Value: strings.TrimSpace(value)})
	}
	return out
}
