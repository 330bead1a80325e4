package events

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// Marshal encodes e as the payload of a NATS message (binary protobuf).
func Marshal(e *mailbusv1.Event) ([]byte, error) {
	b, err := proto.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("events: marshal event %q: %w", e.GetId(), err)
	}
	return b, nil
}

// Unmarshal decodes the payload of a NATS message into an event. Unknown
// fields, from a newer producer, are kept and ignored.
func Unmarshal(b []byte) (*mailbusv1.Event, error) {
	e := new(mailbusv1.Event)
	if err := proto.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("events: unmarshal event: %w", err)
	}
	return e, nil
}
