// The live event feed: one WatchChanges stream per account (Connect server
// streaming over fetch), from the state the account was listed at, each
// event handed to the Mail tab and shown in the feed.
import type { Event } from "./gen/mailbus/v1/events_pb";
import { Code, describe, isCode } from "./api";
import { el, replace } from "./dom";
import { accountLabel, originName, progressText, stateName, when } from "./format";
import { accounts } from "./mail";
import type { Session } from "./session";

// maxWatches bounds the streams: over HTTP/1.1 (a plaintext store) a
// browser opens at most 6 connections to one origin, and each stream
// holds one; the rest are left for calls.
const maxWatches = 4;
const feedSize = 200;
const retryDelay = 2000;

const feed: Event[] = [];
let stop: AbortController | null = null;

export function stopWatches(): void {
  stop?.abort();
  stop = null;
  feed.length = 0;
}

export function startWatches(s: Session, onEvent: (ev: Event) => void): void {
  stopWatches();
  const ctl = new AbortController();
  stop = ctl;
  const list = [...accounts.values()].slice(0, maxWatches);
  for (const a of list) void watch(s, a.id, a.state, ctl.signal, onEvent);
  const note = document.getElementById("feed-note");
  if (note && accounts.size > maxWatches) note.textContent = `Live events of the first ${maxWatches} of ${accounts.size} accounts.`;
}

async function watch(s: Session, accountId: string, since: bigint, signal: AbortSignal, onEvent: (ev: Event) => void): Promise<void> {
  while (!signal.aborted) {
    try {
      for await (const r of s.api.sync.watchChanges({ accountId, sinceState: since }, { signal })) {
        const ev = r.event;
        if (!ev) continue;
        since = ev.state;
        feed.unshift(ev);
        if (feed.length > feedSize) feed.length = feedSize;
        onEvent(ev);
        renderFeed();
      }
    } catch (err) {
      if (signal.aborted) return;
      if (isCode(err, Code.Unauthenticated)) {
        s.fail(err);
        return;
      }
      if (isCode(err, Code.NotFound)) return; // the account was removed
      if (isCode(err, Code.OutOfRange)) since = 0n; // older than the kept log
      const note = document.getElementById("feed-note");
      if (note) note.textContent = `Watch of account ${accountId}: ${describe(err)}; retrying.`;
    }
    await new Promise((r) => setTimeout(r, retryDelay));
  }
}

export function feedPanel(): HTMLElement {
  const panel = el("section", { id: "events" },
    el("h2", {}, "Live events"),
    el("p", { id: "feed-note", class: "muted" }),
    el("ol", { id: "event-feed" }));
  queueMicrotask(renderFeed);
  return panel;
}

function renderFeed(): void {
  const list = document.getElementById("event-feed");
  if (!list) return;
  replace(list, ...feed.map((ev) => el("li", { class: `event kind-${ev.payload.case ?? "unknown"}` },
    el("span", { class: "muted" }, when(ev.time)), " ",
    el("strong", {}, accounts.get(ev.accountId) ? accountLabel(accounts.get(ev.accountId)!) : ev.accountId), " ",
    describeEvent(ev),
    el("span", { class: "muted" }, ` [${originName(ev.origin)}]`))));
}

function describeEvent(ev: Event): string {
  const p = ev.payload;
  switch (p.case) {
    case "messageCreated": return `message.created "${p.value.message?.envelope?.subject ?? ""}"`;
    case "messageUpdated": {
      const parts = [`message.updated ${p.value.message?.id ?? ""}`];
      if (p.value.flagsAdded.length) parts.push(p.value.flagsAdded.map((f) => `+${f}`).join(" "));
      if (p.value.flagsRemoved.length) parts.push(p.value.flagsRemoved.map((f) => `-${f}`).join(" "));
      if (p.value.previousMailboxId) parts.push(`moved from mailbox ${p.value.previousMailboxId}`);
      return parts.join(" ");
    }
    case "messageDeleted": return `message.deleted ${p.value.messageId}`;
    case "mailboxCreated": return `mailbox.created ${p.value.mailbox?.name ?? ""}`;
    case "mailboxUpdated": return `mailbox.updated ${p.value.mailbox?.name ?? ""}`;
    case "mailboxDeleted": return `mailbox.deleted ${p.value.name}`;
    case "accountStatus": {
      const st = p.value.status;
      return `account.status ${stateName(st?.state)} ${progressText(st)} ${st?.reason ?? ""}`.trim();
    }
    case "writebackFailed": return `writeback.failed ${p.value.reason}`;
    default: return "event";
  }
}
