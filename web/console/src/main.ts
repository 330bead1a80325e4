// The mailbus web console: sign in with an API token, then accounts and
// their sync, mailboxes and messages, a live event feed, and for admin
// tokens accounts and tokens to manage. See decision 0032.
import type { Session } from "./session";
import { Code, describe, isCode, newApi, savedToken, saveToken, tokenId } from "./api";
import { byId, el, replace } from "./dom";
import { accountsTab } from "./accounts";
import { mailTab, onMailEvent, refreshAccounts, resetMail } from "./mail";
import { startWatches, stopWatches } from "./events";
import { tokensTab } from "./tokens";

let session: Session | null = null;

function signOut(message = ""): void {
  stopWatches();
  resetMail();
  saveToken("");
  session = null;
  showSignIn(message);
}

function showSignIn(message: string): void {
  const input = el("input", { id: "signin-token", type: "password", autocomplete: "off", spellcheck: "false", placeholder: "mbt_…", required: true });
  const error = el("p", { id: "signin-error", class: "error", role: "alert" }, message);
  const form = el("form", { id: "signin", class: "card signin" },
    el("h1", {}, "mailbus console"),
    el("label", { for: "signin-token" }, "API token"),
    input,
    el("p", { class: "muted" }, "An admin token (mailbus-data/admin.token) or one made with `mailbus token create`. A device token sees only its accounts. The token stays in this tab (sessionStorage)."),
    el("button", { id: "signin-submit", type: "submit" }, "Sign in"),
    error,
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    void signIn(input.value.trim(), error);
  });
  replace(byId("app"), form);
  input.focus();
}

async function signIn(token: string, error: HTMLElement | null): Promise<void> {
  if (!tokenId(token)) {
    if (error) error.textContent = "That is not a mailbus API token (mbt_<id>_<secret>).";
    else showSignIn("");
    return;
  }
  const api = newApi(token);
  try {
    await api.accounts.listAccounts({ pageSize: 1 });
  } catch (err) {
    const msg = isCode(err, Code.Unauthenticated) ? "The store refused this token (unknown, revoked or expired)." : describe(err);
    saveToken("");
    if (error) error.textContent = msg;
    else showSignIn(msg);
    return;
  }
  saveToken(token);
  let admin = false;
  try {
    await api.tokens.listTokens({});
    admin = true;
  } catch (err) {
    if (!isCode(err, Code.PermissionDenied)) throw err;
  }
  session = {
    api,
    admin,
    fail(err, where) {
      if (isCode(err, Code.Unauthenticated)) {
        signOut("The store no longer accepts this token (revoked or expired). Sign in again.");
        return;
      }
      const text = describe(err);
      if (where) where.textContent = text;
      else console.error(text);
    },
  };
  showApp(session);
}

type TabName = "mail" | "accounts" | "tokens";

function showApp(s: Session): void {
  const tabs: [TabName, string][] = [["mail", "Mail"]];
  if (s.admin) tabs.push(["accounts", "Accounts"], ["tokens", "Tokens"]);
  const content = el("main", { id: "content" });
  const nav = el("nav", { id: "tabs" });
  const select = (name: TabName) => {
    for (const b of nav.querySelectorAll("button")) b.classList.toggle("active", b.dataset.tab === name);
    switch (name) {
      case "mail": replace(content, mailTab(s)); break;
      case "accounts": replace(content, accountsTab(s)); break;
      case "tokens": replace(content, tokensTab(s)); break;
    }
  };
  for (const [name, label] of tabs) {
    const b = el("button", { type: "button", id: `tab-${name}`, onclick: () => select(name) }, label);
    b.dataset.tab = name;
    nav.appendChild(b);
  }
  const header = el("header", { id: "top" },
    el("strong", {}, "mailbus"),
    nav,
    el("span", { id: "whoami", class: "muted" }, `${s.admin ? "admin" : "device"} token ${tokenId(savedToken())}`),
    el("button", { type: "button", id: "signout", onclick: () => signOut("") }, "Sign out"),
  );
  replace(byId("app"), header, content);
  select("mail");
  void refreshAccounts(s).then(() => startWatches(s, onMailEvent));
}

const token = savedToken();
if (token) void signIn(token, null);
else showSignIn("");
