// SPDX-License-Identifier: Apache-2.0

// An example client of the mailbus store's API in TypeScript on Node.js,
// over Connect (@connectrpc/connect-node) with the code buf's ES plugin
// generates from the protos (src/gen): it lists the accounts its token
// sees, the first account's mailboxes and the newest messages of its
// INBOX, then replays the account's events with WatchChanges until it has
// caught up (and, with --follow, goes on printing new ones).
//
//   npm ci && npm run build
//   MAILBUS_TOKEN=mbt_... node dist/main.js --url http://127.0.0.1:7400
//
// It sends JSON by default and binary protobuf with --binary.

import { parseArgs } from "node:util";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { timestampDate } from "@bufbuild/protobuf/wkt";

import { AccountService, SyncState, type Account } from "./gen/mailbus/v1/account_pb.js";
import { MailboxService } from "./gen/mailbus/v1/mailbox_pb.js";
import { MailboxRole, type Mailbox } from "./gen/mailbus/v1/common_pb.js";
import { SyncService } from "./gen/mailbus/v1/sync_pb.js";

const { values: args } = parseArgs({
  options: {
    url: { type: "string", default: "http://127.0.0.1:7400" },
    account: { type: "string", default: "" },
    limit: { type: "string", default: "10" },
    binary: { type: "boolean", default: false },
    follow: { type: "boolean", default: false },
  },
});

const token = process.env.MAILBUS_TOKEN;
if (!token) {
  console.error("api-node: set MAILBUS_TOKEN to an API token (mailbus token create --name NAME --account ACCOUNT)");
  process.exit(2);
}

// The API token goes in the Authorization header of every call.
const bearer: Interceptor = (next) => async (req) => {
  req.header.set("Authorization", `Bearer ${token}`);
  return next(req);
};

const transport = createConnectTransport({
  baseUrl: args.url,
  httpVersion: "1.1", // the store answers HTTP/2 (h2c on loopback) too
  useBinaryFormat: args.binary,
  interceptors: [bearer],
});
const accounts = createClient(AccountService, transport);
const mailboxes = createClient(MailboxService, transport);
const sync = createClient(SyncService, transport);

async function main(): Promise<void> {
  const { accounts: list } = await accounts.listAccounts({});
  console.log("accounts:");
  let account: Account | undefined;
  for (const a of list) {
    const state = a.status ? SyncState[a.status.state] : "";
    console.log(`  ${a.id} ${a.name} ${a.username}@${a.host} ${state}`);
    if (!account && (args.account === "" || a.name === args.account)) {
      account = a;
    }
  }
  if (!account) {
    throw new Error("no account to show");
  }

  const { mailboxes: boxes } = await mailboxes.listMailboxes({ accountId: account.id });
  console.log(`mailboxes of ${account.name}:`);
  let inbox: Mailbox | undefined;
  for (const m of boxes) {
    console.log(`  ${m.id} ${m.name} (${m.totalMessages} messages, ${m.unreadMessages} unread)`);
    if (m.role === MailboxRole.INBOX || (!inbox && m.name.toUpperCase() === "INBOX")) {
      inbox = m;
    }
  }
  if (inbox) {
    const { messages } = await mailboxes.listMessages({ mailboxId: inbox.id, pageSize: Number(args.limit) });
    console.log(`newest messages of ${inbox.name}:`);
    for (const m of messages) {
      const env = m.envelope;
      const date = env?.date ? timestampDate(env.date).toISOString().slice(0, 10) : "";
      console.log(`  ${m.id} ${date} ${(env?.from[0]?.email ?? "").padEnd(24)} ${env?.subject ?? ""}`);
    }
  }

  // The events after state 0: all the account's history that the store
  // keeps, then the live ones. A client keeps the last state it saw (a
  // bigint: uint64 in the protos) and starts from there next time.
  console.log(`events of ${account.name}:`);
  let events = 0;
  for await (const item of sync.watchChanges({ accountId: account.id, skipStatus: true })) {
    if (item.caughtUp) {
      console.log(`caught up after ${events} events`);
      if (!args.follow) {
        return;
      }
      continue;
    }
    events++;
    console.log(`  state ${item.event?.state} ${item.event?.payload.case ?? "unknown"}`);
  }
  throw new Error("the store ended the watch");
}

main().then(
  // Exit without waiting for the idle keep-alive connection to close.
  () => process.exit(0),
  (err: unknown) => {
    // A ConnectError carries the store's code: Unauthenticated for a bad
    // token, PermissionDenied for an account the token may not see.
    if (err instanceof ConnectError) {
      console.error(`api-node: ${Code[err.code]}: ${err.rawMessage}`);
    } else {
      console.error("api-node:", err);
    }
    process.exit(1);
  },
);
