package events

import (
	"strings"

	"github.com/nats-io/nats.go"
)

// Headers of every message in the stream, besides Nats-Msg-Id (the event
// id, for de-duplication): a consumer in any language can tell what the
// payload is, and filter or route by kind, without decoding it.
const (
	// HeaderContentType names the encoding of the payload; its value is
	// always ContentType.
	HeaderContentType = "Content-Type"
	// ContentType is the media type of the payload: a binary protobuf
	// mailbus.v1.Event (Marshal).
	ContentType = "application/protobuf"
	// HeaderKind carries the event's kind, such as "message.created": the
	// same as the last part of the subject.
	HeaderKind = "Mailbus-Event-Kind"
)

// Header returns the headers of the message of an event of the given kind:
// HeaderContentType and, when kind is not empty, HeaderKind.
func Header(kind string) nats.Header {
	h := nats.Header{}
	h.Set(HeaderContentType, ContentType)
	if kind != "" {
		h.Set(HeaderKind, kind)
	}
	return h
}

// SubjectKind returns the kind an event subject ends with, whatever its
// prefix and account ("" when it ends with none): a relay publishing on
// subjects of its own (tests) still sends the right HeaderKind.
func SubjectKind(subject string) string {
	for _, k := range Kinds() {
		if strings.HasSuffix(subject, "."+k) {
			return k
		}
	}
	return ""
}
