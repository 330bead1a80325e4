// The Tokens tab (admin): make, list and revoke API tokens.
import { create } from "@bufbuild/protobuf";
import { TokenRole, TokenSchema, type Token } from "./gen/mailbus/v1/token_pb";
import { el, replace } from "./dom";
import { accountLabel, when } from "./format";
import { accounts } from "./mail";
import type { Session } from "./session";

const roles: Record<number, string> = { [TokenRole.DEVICE]: "device", [TokenRole.ADMIN]: "admin", [TokenRole.SERVICE]: "service" };

export function tokensTab(s: Session): HTMLElement {
  const table = el("tbody", {});
  const error = el("p", { class: "error", role: "alert" });
  const all = el("input", { type: "checkbox", id: "tokens-all" });
  const reload = async () => {
    try {
      const r = await s.api.tokens.listTokens({ includeRevoked: all.checked });
      replace(table, ...r.tokens.map((t) => tokenRow(s, t, reload, error)));
    } catch (err) {
      s.fail(err, error);
    }
  };
  all.addEventListener("change", () => void reload());
  void reload();
  return el("div", { class: "admin" },
    el("section", {}, el("h2", {}, "Tokens"),
      el("label", {}, all, " show revoked and expired"),
      el("table", { class: "tokens" },
        el("thead", {}, el("tr", {}, ...["id", "name", "role", "accounts", "", "created", "expires", "revoked", ""].map((h) => el("th", {}, h)))),
        table),
      error),
    createForm(s, reload));
}

function tokenRow(s: Session, t: Token, reload: () => Promise<void>, error: HTMLElement): HTMLElement {
  const names = t.accountIds.map((id) => (accounts.get(id) ? accountLabel(accounts.get(id)!) : id)).join(", ");
  return el("tr", { class: "token", "data-token-id": t.id },
    el("td", { class: "mono" }, t.id), el("td", {}, t.name), el("td", {}, roles[t.role] ?? "?"), el("td", {}, names),
    el("td", {}, t.readOnly ? "read-only" : ""), el("td", {}, when(t.createTime)), el("td", {}, when(t.expireTime)), el("td", {}, when(t.revokeTime)),
    el("td", {}, t.revokeTime ? "" : el("button", { type: "button", class: "token-revoke danger", onclick: () => {
      if (!confirm(`Revoke token ${t.name} (${t.id})? Its open watches end within seconds.`)) return;
      void (async () => {
        try {
          await s.api.tokens.revokeToken({ tokenId: t.id });
          await reload();
        } catch (err) {
          s.fail(err, error);
        }
      })();
    } }, "Revoke")));
}

function createForm(s: Session, reload: () => Promise<void>): HTMLElement {
  const name = el("input", { id: "token-name", required: true });
  const role = el("select", { id: "token-role" }, el("option", { value: String(TokenRole.DEVICE) }, "device"), el("option", { value: String(TokenRole.ADMIN) }, "admin"));
  const readOnly = el("input", { type: "checkbox", id: "token-read-only" });
  const boxes = [...accounts.values()].map((a) => ({ a, box: el("input", { type: "checkbox", class: "token-account", value: a.id }) }));
  const expires = el("input", { id: "token-expires", type: "number", min: "0", placeholder: "never" });
  const result = el("p", { id: "token-secret", role: "status" });
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { id: "token-form", class: "card" },
    el("h2", {}, "Make a token"),
    el("label", {}, "Name", name), el("label", {}, "Role", role),
    el("fieldset", {}, el("legend", {}, "Accounts (device tokens)"), ...boxes.map(({ a, box }) => el("label", {}, box, ` ${accountLabel(a)}`))),
    el("label", {}, readOnly, " read-only"),
    el("label", {}, "Expires in (days)", expires),
    el("button", { type: "submit", id: "token-create" }, "Make token"), result, error);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void (async () => {
      error.textContent = "";
      result.textContent = "";
      const days = Number(expires.value || 0);
      try {
        const r = await s.api.tokens.createToken({ token: create(TokenSchema, {
          name: name.value.trim(),
          role: Number(role.value) as TokenRole,
          accountIds: boxes.filter(({ box }) => box.checked).map(({ a }) => a.id),
          readOnly: readOnly.checked,
          expireTime: days > 0 ? { seconds: BigInt(Math.floor(Date.now() / 1000) + days * 86400), nanos: 0, $typeName: "google.protobuf.Timestamp" } : undefined,
        }) });
        replace(result, "The token (shown once, copy it now): ", el("code", { class: "secret" }, r.secret));
        await reload();
      } catch (err) {
        s.fail(err, error);
      }
    })();
  });
  return form;
}
