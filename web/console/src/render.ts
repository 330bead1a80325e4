// A message's body. HTML mail is hostile: it is shown in an iframe with
// sandbox="" (no scripts, no forms, no popups, an opaque origin) from
// srcdoc, under its own Content-Security-Policy that lets nothing load
// but data: images and inline styles, on top of the console's own policy,
// which the frame inherits. The console never inserts mail as HTML into
// its own page.
import type { Message } from "./gen/mailbus/v1/mailbox_pb";
import { el } from "./dom";

// framePolicy is the message frame's own policy: with default-src 'none'
// no fetch, image, font, frame, media or stylesheet leaves the frame.
export const framePolicy = "default-src 'none'; img-src data:; style-src 'unsafe-inline'";

export function showMessageBody(msg: Message): HTMLElement {
  const box = el("div", { class: "body" });
  if (msg.htmlBody) {
    const frame = el("iframe", { id: "message-html", sandbox: "", referrerpolicy: "no-referrer", title: "message (HTML, remote content blocked)" });
    // A meta element is the only way to give a srcdoc document its own
    // policy; it comes first, so it applies before any of the mail.
    frame.srcdoc = `<!doctype html><html><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="${framePolicy}"></head><body>${msg.htmlBody}</body></html>`;
    box.appendChild(frame);
    if (msg.textBody) box.appendChild(el("details", {}, el("summary", {}, "Text version"), el("pre", { id: "message-text" }, msg.textBody)));
  } else {
    box.appendChild(el("pre", { id: "message-text" }, msg.textBody || "(no text)"));
  }
  if (msg.parseErrors.length) box.appendChild(el("p", { class: "muted" }, `Parse problems: ${msg.parseErrors.join("; ")}`));
  return box;
}
