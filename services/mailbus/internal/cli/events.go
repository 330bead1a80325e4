package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/mailbus/mailbus/pkg/events"
)

func (a *app) eventsCommand() *cobra.Command {
	return group("events", "Work with the events of the MAILBUS_EVENTS stream as NATS carries them",
		`  nats sub --user crm --password "$PW" --raw --translate 'mailbus events decode' 'mailbus.events.>'`,
		a.eventsDecodeCommand())
}

// eventsDecodeCommand turns one event as NATS carries it (protobuf
// mailbus.v1.Event) into JSON, for the nats CLI's --translate, which runs
// a command per message with the message on standard input (decision
// 29).
func (a *app) eventsDecodeCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "decode",
		Short: "Print one event read from standard input (protobuf, as on NATS) as JSON",
		Long: `Read one mailbus.v1.Event as NATS carries it (binary protobuf) from standard
input and print it as protojson on one line, the same JSON as watch --json.
It needs no server: it is for the nats CLI, which runs it for each message
with --translate.`,
		Example: `  nats sub --user crm --password "$PW" --raw --translate 'mailbus events decode' 'mailbus.events.>'
  nats sub --user events-7-a1b2c3 --password "$PW" --raw --translate 'mailbus events decode' 'mailbus.events.7.>'`,
		Args: noArgs,
		RunE: a.run(func(ctx context.Context, cmd *cobra.Command, args []string) error {
			if a.io.In == nil {
				return errors.New("no standard input to read the event from")
			}
			data, err := io.ReadAll(a.io.In)
			if err != nil {
				return fmt.Errorf("read the event: %w", err)
			}
			if len(data) == 0 {
				return errors.New("no event on standard input (want one mailbus.v1.Event, binary protobuf, as NATS carries it)")
			}
			ev, err := events.Unmarshal(data)
			if err != nil {
				return err
			}
			return printJSON(a.io.Out, ev)
		}),
	}
}
