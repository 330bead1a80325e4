// Formatting of the API's values for people.
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { SyncState, type Account, type AccountStatus } from "./gen/mailbus/v1/account_pb";
import { OriginKind, type Address, type Origin } from "./gen/mailbus/v1/common_pb";

export function when(ts: Timestamp | undefined): string {
  if (!ts) return "";
  return timestampDate(ts).toLocaleString();
}

// shortDate is the time of day for today, else the date.
export function shortDate(ts: Timestamp | undefined): string {
  if (!ts) return "";
  const d = timestampDate(ts);
  const now = new Date();
  if (d.toDateString() === now.toDateString()) return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return d.toLocaleDateString();
}

export function addresses(list: Address[]): string {
  return list.map((a) => (a.name ? `${a.name} <${a.email}>` : a.email)).join(", ");
}

export function stateName(s: SyncState | undefined): string {
  switch (s) {
    case SyncState.INITIAL_SYNC: return "initial sync";
    case SyncState.IDLE: return "idle";
    case SyncState.SYNCING: return "syncing";
    case SyncState.RETRYING: return "retrying";
    case SyncState.PARKED: return "parked";
    default: return "waiting";
  }
}

export function originName(o: Origin | undefined): string {
  switch (o?.kind) {
    case OriginKind.UPSTREAM: return "upstream";
    case OriginKind.SYSTEM: return "system";
    case OriginKind.DEVICE: return `device ${o.deviceId}`;
    default: return "";
  }
}

export function size(n: bigint | number): string {
  const v = Number(n);
  if (v < 1024) return `${v} B`;
  if (v < 1024 * 1024) return `${(v / 1024).toFixed(1)} KB`;
  return `${(v / 1024 / 1024).toFixed(1)} MB`;
}

// progressText says how far an initial sync is.
export function progressText(st: AccountStatus | undefined): string {
  const p = st?.progress;
  if (!p) return "";
  const parts: string[] = [];
  if (p.messagesTotal > 0n) parts.push(`${p.messagesDone} / ${p.messagesTotal} messages`);
  if (p.foldersTotal > 0) parts.push(`${p.foldersDone} / ${p.foldersTotal} folders`);
  return parts.join(", ");
}

export function accountLabel(a: Account): string {
  return a.name || `account ${a.id}`;
}
