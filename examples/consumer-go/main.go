// Command consumer-go prints mailbus events as JSON, one a line, read from
// the durable consumer of a NATS user made with `mailbus nats-user create`
// (NATS_URL, NATS_USER, NATS_PASSWORD), and acknowledges each.
package main

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func main() {
	nc, err := nats.Connect(os.Getenv("NATS_URL"), nats.UserInfo(os.Getenv("NATS_USER"), os.Getenv("NATS_PASSWORD")))
	check(err)
	js, err := jetstream.NewWithAPIPrefix(nc, "MAILBUS.JS.API") // the user's account sees the API here
	check(err)
	consumer, err := js.Consumer(context.Background(), "MAILBUS_EVENTS", os.Getenv("NATS_USER"))
	check(err)
	msgs, err := consumer.Messages()
	check(err)
	for {
		msg, err := msgs.Next()
		check(err)
		event := &mailbusv1.Event{}
		check(proto.Unmarshal(msg.Data(), event))
		line, err := protojson.Marshal(event)
		check(err)
		fmt.Println(string(line))
		check(msg.Ack())
	}
}

func check(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
