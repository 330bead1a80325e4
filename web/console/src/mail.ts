// The Mail tab: accounts with their sync state, their mailboxes, a page of
// messages (newest first) and the open message, kept current by the live
// events (onMailEvent).
import { SyncState, type Account } from "./gen/mailbus/v1/account_pb";
import type { Mailbox, MessageSummary } from "./gen/mailbus/v1/common_pb";
import type { Event } from "./gen/mailbus/v1/events_pb";
import type { Message } from "./gen/mailbus/v1/mailbox_pb";
import { MailboxRole } from "./gen/mailbus/v1/common_pb";
import { append, el, replace } from "./dom";
import { feedPanel } from "./events";
import { accountLabel, addresses, progressText, shortDate, size, stateName, when } from "./format";
import { showMessageBody } from "./render";
import type { Session } from "./session";

const pageSize = 50;

// The console's view of the store, shared by the tabs.
export const accounts = new Map<string, Account>();
const mailboxes = new Map<string, Mailbox[]>();

interface View {
  account?: string;
  mailbox?: Mailbox;
  // pageTokens[i] is the token of page i (page 0: ""); page is the index.
  pageTokens: string[];
  page: number;
  nextToken: string;
  messages: MessageSummary[];
  open?: Message;
}
const view: View = { pageTokens: [""], page: 0, nextToken: "", messages: [] };
let current: Session | null = null;
// loaded: the accounts have been listed once in this session.
let loaded = false;

// resetMail forgets what the last session saw (on sign-out).
export function resetMail(): void {
  accounts.clear();
  mailboxes.clear();
  Object.assign(view, { account: undefined, mailbox: undefined, pageTokens: [""], page: 0, nextToken: "", messages: [], open: undefined });
  pendingMailboxes.clear();
  clearTimeout(refreshTimer);
  refreshTimer = undefined;
  current = null;
  loaded = false;
}

// refreshAccounts lists every account the token sees, and their mailboxes.
export async function refreshAccounts(s: Session): Promise<void> {
  current = s;
  const all: Account[] = [];
  let pageToken = "";
  try {
    do {
      const r = await s.api.accounts.listAccounts({ pageToken, pageSize: 500 });
      all.push(...r.accounts);
      pageToken = r.nextPageToken;
    } while (pageToken);
  } catch (err) {
    s.fail(err, document.getElementById("mail-error") ?? undefined);
    return;
  }
  accounts.clear();
  for (const a of all) accounts.set(a.id, a);
  loaded = true;
  await Promise.all(all.map((a) => loadMailboxes(s, a.id)));
  renderAccounts();
}

async function loadMailboxes(s: Session, accountId: string): Promise<void> {
  try {
    const r = await s.api.mailboxes.listMailboxes({ accountId });
    const list = [...r.mailboxes].sort((a, b) => roleOrder(a) - roleOrder(b) || a.name.localeCompare(b.name));
    mailboxes.set(accountId, list);
    if (view.mailbox) {
      const fresh = list.find((m) => m.id === view.mailbox?.id);
      if (fresh) view.mailbox = fresh;
    }
  } catch (err) {
    s.fail(err, document.getElementById("mail-error") ?? undefined);
  }
}

function roleOrder(m: Mailbox): number {
  return m.role === MailboxRole.INBOX ? 0 : m.role === MailboxRole.UNSPECIFIED ? 2 : 1;
}

export function mailTab(s: Session): HTMLElement {
  current = s;
  const tab = el("div", { class: "mail" },
    el("aside", { id: "accounts" }),
    el("section", { id: "messages" }),
    el("section", { id: "message" }),
    el("p", { id: "mail-error", class: "error", role: "alert" }),
    feedPanel(),
  );
  queueMicrotask(() => { renderAccounts(); renderMessages(); renderMessage(); });
  return tab;
}

function renderAccounts(): void {
  const box = document.getElementById("accounts");
  if (!box) return;
  if (accounts.size === 0) {
    replace(box, el("p", { class: "muted" }, loaded ? "No accounts. An admin adds them (Accounts tab, or mailbus account add)." : "Loading…"));
    return;
  }
  replace(box, ...[...accounts.values()].map(accountCard));
}

export function accountCard(a: Account): HTMLElement {
  const st = a.status;
  const state = st?.state ?? SyncState.UNSPECIFIED;
  const card = el("div", { class: `account state-${stateName(state).replace(" ", "-")}`, "data-account-id": a.id },
    el("div", { class: "account-head" },
      el("strong", { class: "account-name" }, accountLabel(a)),
      el("span", { class: "badge account-state" }, stateName(state))),
    el("div", { class: "muted" }, `${a.username}@${a.host} (${a.protocol === 2 ? "POP3" : "IMAP"})`),
  );
  const total = st?.progress?.messagesTotal ?? 0n;
  if (state === SyncState.INITIAL_SYNC || (state === SyncState.SYNCING && total > 0n)) {
    const done = st?.progress?.messagesDone ?? 0n;
    append(card,
      el("progress", { class: "account-progress", max: String(total > 0n ? total : 1n), value: String(done) }),
      el("div", { class: "muted account-progress-text" }, progressText(st)));
  }
  if (st?.reason && (state === SyncState.PARKED || state === SyncState.RETRYING)) {
    append(card, el("div", { class: "account-reason" }, st.reason));
  }
  const list = el("ul", { class: "mailboxes" });
  for (const m of mailboxes.get(a.id) ?? []) {
    const active = view.mailbox?.id === m.id;
    const b = el("button", { type: "button", class: `mailbox${active ? " active" : ""}`, "data-mailbox-id": m.id, "data-mailbox-name": m.name, onclick: () => void openMailbox(m) },
      m.name, m.unreadMessages > 0 ? el("span", { class: "count" }, ` ${m.unreadMessages}`) : null,
      el("span", { class: "muted" }, ` (${m.totalMessages})`));
    list.appendChild(el("li", {}, b));
  }
  card.appendChild(list);
  return card;
}

async function openMailbox(m: Mailbox): Promise<void> {
  view.account = m.accountId;
  view.mailbox = m;
  view.pageTokens = [""];
  view.page = 0;
  view.open = undefined;
  view.messages = [];
  view.nextToken = "";
  renderAccounts();
  renderMessages();
  renderMessage();
  await loadPage();
}

async function loadPage(): Promise<void> {
  const s = current;
  const m = view.mailbox;
  if (!s || !m) return;
  try {
    const r = await s.api.mailboxes.listMessages({ mailboxId: m.id, pageSize, pageToken: view.pageTokens[view.page] });
    if (view.mailbox?.id !== m.id) return;
    view.messages = r.messages;
    view.nextToken = r.nextPageToken;
  } catch (err) {
    s.fail(err, document.getElementById("mail-error") ?? undefined);
  }
  renderMessages();
}

function renderMessages(): void {
  const box = document.getElementById("messages");
  if (!box) return;
  const m = view.mailbox;
  if (!m) {
    replace(box, el("p", { class: "muted" }, "Choose a mailbox."));
    return;
  }
  const first = view.page * pageSize + 1;
  const pager = el("div", { class: "pager" },
    el("button", { type: "button", id: "page-newer", disabled: view.page === 0, onclick: () => { view.page--; void loadPage(); } }, "‹ Newer"),
    el("span", { class: "muted" }, view.messages.length ? ` ${first}–${first + view.messages.length - 1} of ${m.totalMessages} ` : " no messages "),
    el("button", { type: "button", id: "page-older", disabled: !view.nextToken, onclick: () => {
      view.pageTokens[view.page + 1] = view.nextToken;
      view.page++;
      void loadPage();
    } }, "Older ›"),
  );
  const rows = view.messages.map((msg) => {
    const flags = new Set(msg.flags);
    const env = msg.envelope;
    return el("tr", { class: `message${flags.has("\\Seen") ? "" : " unread"}${view.open?.summary?.id === msg.id ? " active" : ""}`, "data-message-id": msg.id, onclick: () => void openMessage(msg.id) },
      el("td", { class: "flag" }, flags.has("\\Flagged") ? "★" : ""),
      el("td", { class: "from" }, addresses(env?.from ?? [])),
      el("td", { class: "subject" }, env?.subject || "(no subject)", msg.hasAttachments ? el("span", { class: "muted" }, " [attachment]") : null),
      el("td", { class: "date", title: when(msg.internalDate) }, shortDate(msg.internalDate)));
  });
  replace(box,
    el("h2", { id: "mailbox-title" }, m.name),
    pager,
    el("table", { class: "messages", "data-mailbox-id": m.id }, el("tbody", {}, ...rows)));
}

async function openMessage(id: string): Promise<void> {
  const s = current;
  if (!s) return;
  try {
    const r = await s.api.mailboxes.getMessage({ messageId: id });
    view.open = r.message;
  } catch (err) {
    s.fail(err, document.getElementById("mail-error") ?? undefined);
    return;
  }
  renderMessages();
  renderMessage();
}

function renderMessage(): void {
  const box = document.getElementById("message");
  if (!box) return;
  const msg = view.open;
  const sum = msg?.summary;
  if (!msg || !sum) {
    replace(box);
    return;
  }
  const s = current!;
  const env = sum.envelope;
  const flags = new Set(sum.flags);
  const error = el("p", { id: "message-error", class: "error", role: "alert" });
  const change = async (f: () => Promise<unknown>) => {
    error.textContent = "";
    try {
      await f();
    } catch (err) {
      s.fail(err, error);
    }
  };
  const setFlag = (flag: string, on: boolean) => change(async () => {
    const r = await s.api.mailboxes.updateFlags({ accountId: sum.accountId, messageIds: [sum.id], add: on ? [flag] : [], remove: on ? [] : [flag], deviceId: s.api.device });
    if (r.messages[0] && view.open?.summary?.id === sum.id) view.open.summary = r.messages[0];
    renderMessage();
    await loadPage();
  });
  const moveTo = el("select", { id: "move-to" },
    ...(mailboxes.get(sum.accountId) ?? []).filter((m) => m.id !== sum.mailboxId).map((m) => el("option", { value: m.id }, m.name)));
  const actions = el("div", { class: "actions" },
    el("button", { type: "button", id: "flag-toggle", onclick: () => void setFlag("\\Flagged", !flags.has("\\Flagged")) }, flags.has("\\Flagged") ? "Unflag" : "Flag"),
    el("button", { type: "button", id: "seen-toggle", onclick: () => void setFlag("\\Seen", !flags.has("\\Seen")) }, flags.has("\\Seen") ? "Mark unread" : "Mark read"),
    moveTo,
    el("button", { type: "button", id: "move", onclick: () => void change(async () => {
      await s.api.mailboxes.moveMessages({ accountId: sum.accountId, messageIds: [sum.id], toMailboxId: moveTo.value, deviceId: s.api.device });
      view.open = undefined;
      renderMessage();
      await loadPage();
    }) }, "Move"),
    el("button", { type: "button", id: "delete", class: "danger", onclick: () => {
      if (!confirm("Delete this message (also on the server)?")) return;
      void change(async () => {
        await s.api.mailboxes.deleteMessages({ accountId: sum.accountId, messageIds: [sum.id], deviceId: s.api.device });
        view.open = undefined;
        renderMessage();
        await loadPage();
      });
    } }, "Delete"),
    el("button", { type: "button", id: "download-raw", onclick: () => void change(() => downloadRaw(s, sum)) }, "Download .eml"),
  );
  const headers = el("dl", { class: "headers" });
  const header = (name: string, value: string) => {
    if (value) append(headers, el("dt", {}, name), el("dd", { "data-header": name.toLowerCase() }, value));
  };
  header("From", addresses(env?.from ?? []));
  header("To", addresses(env?.to ?? []));
  header("Cc", addresses(env?.cc ?? []));
  header("Date", when(env?.date ?? sum.internalDate));
  header("Flags", sum.flags.join(" "));
  const attachments = msg.attachments.length === 0 ? null : el("ul", { class: "attachments" },
    ...msg.attachments.map((a) => el("li", {},
      el("button", { type: "button", class: "attachment", "data-part-id": a.partId, onclick: () => void change(() => downloadAttachment(s, sum.id, a.partId, a.filename || `part-${a.partId}`)) },
        `Download ${a.filename || a.contentType}`),
      el("span", { class: "muted" }, ` ${a.contentType}, ${size(a.size)}`))));
  replace(box,
    el("h2", { id: "message-subject" }, env?.subject || "(no subject)"),
    headers, actions, error, attachments,
    showMessageBody(msg));
}

async function downloadAttachment(s: Session, messageId: string, partId: string, filename: string): Promise<void> {
  const parts: Uint8Array[] = [];
  let type = "application/octet-stream";
  for await (const r of s.api.mailboxes.getAttachment({ messageId, partId })) {
    parts.push(r.data);
    if (r.contentType) type = r.contentType;
    if (r.filename) filename = r.filename;
  }
  save(new Blob(parts as BlobPart[], { type }), filename);
}

async function downloadRaw(s: Session, sum: MessageSummary): Promise<void> {
  const parts: Uint8Array[] = [];
  for await (const r of s.api.mailboxes.getRawMessage({ messageId: sum.id })) parts.push(r.data);
  save(new Blob(parts as BlobPart[], { type: "message/rfc822" }), `message-${sum.id}.eml`);
}

function save(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = el("a", { href: url, download: filename.replace(/[\\/]/g, "_") });
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// Refreshes after events are batched: a burst of events (an initial sync)
// costs one listing.
const pendingMailboxes = new Set<string>();
let refreshTimer: number | undefined;
let reloadPage = false;
let reloadOpen = false;

// onMailEvent keeps the tab current with an account's event.
export function onMailEvent(ev: Event): void {
  const a = accounts.get(ev.accountId);
  if (!a) return;
  a.state = ev.state;
  const p = ev.payload;
  switch (p.case) {
    case "accountStatus":
      a.status = p.value.status;
      renderAccounts();
      return;
    case "messageCreated":
    case "messageUpdated":
    case "messageDeleted": {
      const mb = p.case === "messageDeleted" ? p.value.mailboxId : p.value.message?.mailboxId;
      const prev = p.case === "messageUpdated" ? p.value.previousMailboxId : "";
      if (view.mailbox && (mb === view.mailbox.id || prev === view.mailbox.id)) reloadPage = true;
      const id = p.case === "messageDeleted" ? p.value.messageId : p.value.message?.id;
      if (id && view.open?.summary?.id === id) reloadOpen = true;
      break;
    }
    case "mailboxCreated":
    case "mailboxUpdated":
    case "mailboxDeleted":
    case "writebackFailed":
      break;
    default:
      return;
  }
  pendingMailboxes.add(ev.accountId);
  if (refreshTimer === undefined) refreshTimer = window.setTimeout(flushRefresh, 300);
}

async function flushRefresh(): Promise<void> {
  refreshTimer = undefined;
  const s = current;
  if (!s) return;
  const ids = [...pendingMailboxes];
  pendingMailboxes.clear();
  await Promise.all(ids.map((id) => loadMailboxes(s, id)));
  renderAccounts();
  if (reloadPage) {
    reloadPage = false;
    await loadPage();
  }
  if (reloadOpen && view.open?.summary) {
    reloadOpen = false;
    const id = view.open.summary.id;
    try {
      view.open = (await s.api.mailboxes.getMessage({ messageId: id })).message;
    } catch {
      view.open = undefined; // deleted or moved away
    }
    renderMessage();
  }
}
