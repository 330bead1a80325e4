// The Accounts tab (admin): add, change and remove accounts.
import { create } from "@bufbuild/protobuf";
import { DurationSchema, FieldMaskSchema } from "@bufbuild/protobuf/wkt";
import { AccountSchema, AuthMethod, Pop3Mode, Protocol, Security, type Account } from "./gen/mailbus/v1/account_pb";
import { append, el, replace } from "./dom";
import { accountLabel, stateName } from "./format";
import { accountCard, accounts, refreshAccounts } from "./mail";
import type { Session } from "./session";

export function accountsTab(s: Session): HTMLElement {
  const list = el("div", { id: "account-admin-list" });
  const form = el("div", { id: "account-form-box" });
  const tab = el("div", { class: "admin" }, el("section", {}, el("h2", {}, "Accounts"),
    el("button", { type: "button", id: "account-add", onclick: () => replace(form, renderAccountForm(s, undefined, reload)) }, "Add account"),
    list), form);
  const reload = async () => {
    await refreshAccounts(s);
    replace(list, ...[...accounts.values()].map((a) => el("div", { class: "account-row" },
      accountCard(a),
      el("button", { type: "button", class: "account-edit", onclick: () => replace(form, renderAccountForm(s, a, reload)) }, "Change"),
      el("button", { type: "button", class: "account-remove danger", onclick: () => void remove(s, a, reload, form) }, "Remove"))));
  };
  void reload();
  return tab;
}

async function remove(s: Session, a: Account, reload: () => Promise<void>, box: HTMLElement): Promise<void> {
  if (!confirm(`Remove account ${accountLabel(a)} and all its mail from mailbus? (The server keeps its mail.)`)) return;
  try {
    await s.api.accounts.deleteAccount({ accountId: a.id });
    await reload();
  } catch (err) {
    s.fail(err, box);
  }
}

const securities: [Security, string][] = [[Security.TLS, "tls"], [Security.STARTTLS, "starttls"], [Security.NONE, "none (plaintext)"]];

// renderAccountForm is the form to add an account (a undefined) or change one.
export function renderAccountForm(s: Session, a: Account | undefined, done: () => Promise<void>): HTMLElement {
  const field = (label: string, input: HTMLElement) => el("label", {}, label, input);
  const name = el("input", { name: "name", required: true, value: a?.name ?? "" });
  const protocol = el("select", { name: "protocol", disabled: !!a },
    el("option", { value: String(Protocol.IMAP) }, "IMAP"), el("option", { value: String(Protocol.POP3) }, "POP3"));
  protocol.value = String(a?.protocol ?? Protocol.IMAP);
  const host = el("input", { name: "host", required: true, value: a?.host ?? "" });
  const port = el("input", { name: "port", type: "number", min: "0", max: "65535", value: a?.port ? String(a.port) : "", placeholder: "default" });
  const security = el("select", { name: "security" }, ...securities.map(([v, l]) => el("option", { value: String(v) }, l)));
  security.value = String(a?.security || Security.TLS);
  const username = el("input", { name: "username", required: true, value: a?.username ?? "" });
  const password = el("input", { name: "password", type: "password", autocomplete: "new-password", required: !a, placeholder: a ? "unchanged" : "" });
  const pop3Mode = el("select", { name: "pop3_mode" },
    el("option", { value: String(Pop3Mode.KEEP) }, "keep on server"), el("option", { value: String(Pop3Mode.DELETE) }, "delete from server"));
  pop3Mode.value = String(a?.pop3Mode || Pop3Mode.KEEP);
  const poll = el("input", { name: "poll", type: "number", min: "0", value: a?.pollInterval ? String(a.pollInterval.seconds) : "", placeholder: "default" });
  const error = el("p", { class: "error", role: "alert" });
  const form = el("form", { id: "account-form", class: "card" },
    el("h2", {}, a ? `Change ${accountLabel(a)}` : "Add an account"),
    field("Name", name), field("Protocol", protocol), field("Host", host), field("Port", port), field("Security", security),
    field("User name", username), field("Password", password), field("POP3 mode", pop3Mode), field("Poll every (seconds)", poll),
    el("button", { type: "submit" }, a ? "Save" : "Add"), error);
  if (a) append(form, el("p", { class: "muted" }, `State: ${stateName(a.status?.state)}. Saving retries a parked account. A new host, port or security needs the password again.`));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = create(AccountSchema, {
      id: a?.id ?? "",
      name: name.value.trim(),
      protocol: Number(protocol.value) as Protocol,
      host: host.value.trim(),
      port: Number(port.value || 0),
      security: Number(security.value) as Security,
      username: username.value.trim(),
      authMethod: AuthMethod.PASSWORD,
      secret: password.value,
      pop3Mode: Number(protocol.value) === Protocol.POP3 ? (Number(pop3Mode.value) as Pop3Mode) : Pop3Mode.UNSPECIFIED,
      pollInterval: poll.value ? create(DurationSchema, { seconds: BigInt(poll.value) }) : undefined,
    });
    void (async () => {
      error.textContent = "";
      try {
        if (!a) {
          await s.api.accounts.createAccount({ account: next });
        } else {
          const paths: string[] = [];
          if (next.name !== a.name) paths.push("name");
          if (next.host !== a.host) paths.push("host");
          if (next.port !== a.port) paths.push("port");
          if (next.security !== a.security) paths.push("security");
          if (next.username !== a.username) paths.push("username");
          if (next.secret) paths.push("secret", "auth_method");
          if (a.protocol === Protocol.POP3 && next.pop3Mode !== a.pop3Mode) paths.push("pop3_mode");
          if ((next.pollInterval?.seconds ?? 0n) !== (a.pollInterval?.seconds ?? 0n)) paths.push("poll_interval");
          if (paths.length === 0) paths.push("name"); // an update with no change retries a parked account
          await s.api.accounts.updateAccount({ account: next, updateMask: create(FieldMaskSchema, { paths }) });
        }
        form.remove();
        await done();
      } catch (err) {
        s.fail(err, error);
      }
    })();
  });
  return form;
}
