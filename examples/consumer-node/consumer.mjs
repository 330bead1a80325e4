// Prints mailbus events as JSON, one a line, read from the durable consumer of
// a NATS user made with `mailbus nats-user create` (NATS_URL, NATS_USER,
// NATS_PASSWORD), and acknowledges each. mailbus.binpb describes the events
// (make generate writes it from proto/).
import { readFileSync } from "node:fs";
import { connect } from "nats";
import { createFileRegistry, fromBinary, toJsonString } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";

const descriptors = readFileSync(new URL("mailbus.binpb", import.meta.url));
const Event = createFileRegistry(fromBinary(FileDescriptorSetSchema, descriptors)).getMessage("mailbus.v1.Event");
const { NATS_URL: servers, NATS_USER: user, NATS_PASSWORD: pass } = process.env;
const nc = await connect({ servers, user, pass });
const js = nc.jetstream({ apiPrefix: "MAILBUS.JS.API" }); // the user's account sees the API here
const consumer = await js.consumers.get("MAILBUS_EVENTS", user);
for await (const msg of await consumer.consume()) {
  console.log(toJsonString(Event, fromBinary(Event, msg.data)));
  msg.ack();
}
