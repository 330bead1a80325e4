package console

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/demo"
)

// TestConsole signs in to the console with the admin token, sees both demo
// accounts and their messages, opens a message, flags it and sees the flag
// reach the IMAP server, sees mail delivered upstream appear without a
// reload, opens a hostile HTML message that may neither run script nor
// load anything, and checks that a read-only token cannot flag and that a
// refused token gets the sign-in page.
func TestConsole(t *testing.T) {
	browser := newBrowser(t)
	w := startWorld(t)
	adminID, err := apitoken.ID(w.adminToken)
	if err != nil {
		t.Fatal(err)
	}
	imapInbox := fmt.Sprintf(`.account[data-account-id="%s"] .mailbox[data-mailbox-name="INBOX"]`, w.imapAcct.Id)
	popInbox := fmt.Sprintf(`.account[data-account-id="%s"] .mailbox[data-mailbox-name="INBOX"]`, w.popAcct.Id)

	t.Run("sign in", func(t *testing.T) {
		step(t, browser, "the sign-in page", chromedp.Navigate(w.consoleURL()), chromedp.WaitVisible(chromedp.CSS("#signin-token")))
		screenshot(t, browser, "01-sign-in")
		fcp := get(t, browser, "first paint", chromedp.Evaluate[float64](`(performance.getEntriesByName('first-contentful-paint')[0] || {startTime: -1}).startTime`))
		t.Logf("first contentful paint of the sign-in page: %.0f ms", fcp)
		step(t, browser, "sign in",
			chromedp.SendKeys(chromedp.CSS("#signin-token"), w.adminToken),
			chromedp.Click(chromedp.CSS("#signin-submit")),
			chromedp.WaitVisible(chromedp.CSS(imapInbox)),
			chromedp.WaitVisible(chromedp.CSS(popInbox)))
		if stored := get(t, browser, "the token in sessionStorage", chromedp.Evaluate[string](`sessionStorage.getItem('mailbus.token')`)); stored != w.adminToken {
			t.Fatal("the token is not kept in sessionStorage")
		}
	})

	t.Run("both accounts and their messages", func(t *testing.T) {
		for _, tc := range []struct {
			inbox, account string
			want           []demo.Message
			// byDate: the internal date is the Date header (IMAP), so the
			// newest is known; a POP3 message's is when it was fetched.
			byDate bool
		}{
			{imapInbox, w.imapAcct.Id, inboxOf(demo.IMAPMessages()), true},
			{popInbox, w.popAcct.Id, demo.POP3Messages(), false},
		} {
			openMailbox(t, browser, tc.inbox)
			var subjects []string
			for _, m := range tc.want {
				subjects = append(subjects, m.Subject)
			}
			waitJS(t, browser, "every message listed", fmt.Sprintf(
				`(subjects => { const shown = [...document.querySelectorAll('tr.message td.subject')].map(td => td.textContent);
					return shown.length === subjects.length && subjects.every(s => shown.some(x => x.startsWith(s))) })(%s)`, jsArray(subjects)))
			if tc.byDate {
				newest := slices.MaxFunc(tc.want, func(a, b demo.Message) int { return a.Date.Compare(b.Date) })
				waitJS(t, browser, "the newest message first", fmt.Sprintf(
					`document.querySelector('tr.message td.subject').textContent.startsWith(%s)`, jsString(newest.Subject)))
			}
			screenshot(t, browser, "02-messages-"+tc.account)
		}
	})

	var flaggedID, flaggedMessageID string
	t.Run("open and flag a message; the flag reaches the IMAP server", func(t *testing.T) {
		openMailbox(t, browser, imapInbox)
		flaggedID = firstUnflagged(t, browser)
		msg := w.message(t, flaggedID)
		flaggedMessageID = msg.GetEnvelope().GetMessageId()
		step(t, browser, "open the message",
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr.message[data-message-id="%s"]`, flaggedID))),
			chromedp.WaitVisible(chromedp.CSS("#message-subject")))
		subject := get(t, browser, "its subject", chromedp.Text(chromedp.CSS("#message-subject")))
		if subject != msg.GetEnvelope().GetSubject() {
			t.Fatalf("opened %q, want %q", subject, msg.GetEnvelope().GetSubject())
		}
		screenshot(t, browser, "03-message")
		step(t, browser, "flag it", chromedp.Click(chromedp.CSS("#flag-toggle")))
		eventually(t, "the flag on the IMAP server", func() error {
			return w.imapHasFlag(flaggedMessageID, `\Flagged`, true)
		})
		// The change came from this console, as device console:<token id>.
		waitJS(t, browser, "the flag change in the live feed", fmt.Sprintf(
			`[...document.querySelectorAll('#event-feed li')].some(li => li.textContent.includes('+\\Flagged') && li.textContent.includes(%s))`,
			jsString("device console:"+adminID)))
		waitJS(t, browser, "the flag shown", `document.querySelector('#flag-toggle').textContent === 'Unflag'`)
		screenshot(t, browser, "04-flagged")
	})

	t.Run("mail delivered upstream appears without a reload", func(t *testing.T) {
		get(t, browser, "mark the page", chromedp.Evaluate[bool](`window.mailbusNoReload = true`))
		subject := fmt.Sprintf("Delivered while watching %d", time.Now().UnixNano())
		if err := w.imap.Deliver(demo.Message{Folder: "INBOX", Date: time.Now(), Raw: rawMessage(subject, "text/plain", "New mail, live.")}); err != nil {
			t.Fatal(err)
		}
		waitJS(t, browser, "the new message listed", fmt.Sprintf(
			`window.mailbusNoReload === true && document.querySelector('tr.message td.subject').textContent.startsWith(%s)`, jsString(subject)))
		screenshot(t, browser, "05-new-mail")
	})

	t.Run("hostile HTML neither runs script nor loads anything", func(t *testing.T) {
		rec := newRecorder(t)
		// Checked however the subtest ends: a mail that navigated the
		// console away would time out the steps below first.
		defer func() {
			if got := rec.requests(); len(got) > 0 {
				t.Errorf("the hostile message made the browser reach %s: %v", rec.URL, got)
			}
		}()
		subject := fmt.Sprintf("Hostile %d", time.Now().UnixNano())
		if err := w.imap.Deliver(demo.Message{Folder: "INBOX", Date: time.Now(), Raw: rawMessage(subject, "text/html; charset=utf-8", hostileHTML(rec.URL))}); err != nil {
			t.Fatal(err)
		}
		waitJS(t, browser, "the hostile message listed", fmt.Sprintf(`document.querySelector('tr.message td.subject').textContent.startsWith(%s)`, jsString(subject)))
		// Count the message frame's load events from before it exists: a
		// frame's load comes after its document and every subresource it
		// asked for have loaded or failed.
		get(t, browser, "watch frame loads", chromedp.Evaluate[bool](`window.mailbusFrameLoads = 0;
			document.addEventListener('load', e => { if (e.target.id === 'message-html') window.mailbusFrameLoads++ }, true); true`))
		step(t, browser, "open it", chromedp.Click(chromedp.CSS(`tr.message:first-child`)), chromedp.WaitVisible(chromedp.CSS("#message-html")))
		waitJS(t, browser, "the frame loaded", `window.mailbusFrameLoads >= 1`)
		sandbox := get(t, browser, "the frame's sandbox", chromedp.AttributeValue(chromedp.CSS("#message-html"), "sandbox"))
		if !sandbox.Exists || sandbox.Value != "" {
			t.Fatalf("message frame sandbox=%q (present %v), want an empty sandbox", sandbox.Value, sandbox.Exists)
		}
		// A round trip to the browser after the load, then the console
		// is still there (no navigation by the mail).
		title := get(t, browser, "the console is still the page", chromedp.Text(chromedp.CSS("#message-subject")))
		if title != subject {
			t.Fatalf("after opening the hostile message the page shows %q", title)
		}
		screenshot(t, browser, "06-hostile")
	})

	t.Run("a read-only token cannot flag", func(t *testing.T) {
		resp, err := w.tokens.CreateToken(ctxFor(t), &mailbusv1.CreateTokenRequest{Token: &mailbusv1.Token{
			Name: "console-read-only", Role: mailbusv1.TokenRole_TOKEN_ROLE_DEVICE, AccountIds: []string{w.imapAcct.Id}, ReadOnly: true,
		}})
		if err != nil {
			t.Fatal(err)
		}
		step(t, browser, "sign out and in with a read-only token",
			chromedp.Click(chromedp.CSS("#signout")),
			chromedp.WaitVisible(chromedp.CSS("#signin-token")),
			chromedp.SendKeys(chromedp.CSS("#signin-token"), resp.Secret),
			chromedp.Click(chromedp.CSS("#signin-submit")),
			chromedp.WaitVisible(chromedp.CSS(imapInbox)))
		// A device token sees only its accounts (one listing renders them all).
		cards := get(t, browser, "the accounts shown", chromedp.Evaluate[int](`document.querySelectorAll('.account').length`))
		if cards != 1 {
			t.Fatalf("a device token of one account sees %d accounts", cards)
		}
		openMailbox(t, browser, imapInbox)
		id := firstUnflagged(t, browser)
		msg := w.message(t, id)
		step(t, browser, "try to flag a message",
			chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr.message[data-message-id="%s"]`, id))),
			chromedp.WaitVisible(chromedp.CSS("#flag-toggle")),
			chromedp.Click(chromedp.CSS("#flag-toggle")))
		waitJS(t, browser, "the refusal shown", `document.querySelector('#message-error').textContent.startsWith('Not allowed')`)
		screenshot(t, browser, "07-read-only")
		// Refused by the store: nothing changed there, so nothing was
		// queued for the IMAP server either.
		if got := w.message(t, id); slices.Contains(got.Flags, `\Flagged`) {
			t.Fatalf("a read-only token flagged message %s: %v", id, got.Flags)
		}
		if err := w.imapHasFlag(msg.GetEnvelope().GetMessageId(), `\Flagged`, false); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("a refused token gets the sign-in page", func(t *testing.T) {
		get(t, browser, "an unknown token in the session",
			chromedp.Evaluate[bool](`sessionStorage.setItem('mailbus.token', 'mbt_0123456789abcdef_notatoken'); location.reload(); true`))
		step(t, browser, "the sign-in page", chromedp.WaitVisible(chromedp.CSS("#signin-token")))
		waitJS(t, browser, "the reason", `document.querySelector('#signin-error').textContent.includes('refused this token')`)
		if stored := get(t, browser, "the token forgotten", chromedp.Evaluate[*string](`sessionStorage.getItem('mailbus.token')`)); stored != nil {
			t.Fatalf("the refused token is still stored: %q", *stored)
		}
		screenshot(t, browser, "08-refused")
	})
}

// openMailbox clicks a mailbox and waits for its messages to be listed.
func openMailbox(t *testing.T, ctx context.Context, sel string) {
	t.Helper()
	id := get(t, ctx, "the mailbox's id", chromedp.AttributeValue(chromedp.CSS(sel), "data-mailbox-id"))
	if !id.Exists {
		t.Fatalf("%s has no data-mailbox-id", sel)
	}
	step(t, ctx, "open mailbox "+id.Value, chromedp.Click(chromedp.CSS(sel)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`table.messages[data-mailbox-id="%s"] tr.message`, id.Value))))
}

// waitJS waits until the JavaScript expression is true in the tab.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	get(t, ctx, what, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond)))
}

// firstUnflagged is the store id of the first message listed without a flag.
func firstUnflagged(t *testing.T, ctx context.Context) string {
	t.Helper()
	id := get(t, ctx, "a message without a flag", chromedp.Evaluate[string](
		`([...document.querySelectorAll('tr.message')].find(tr => tr.querySelector('td.flag').textContent === '') || {dataset: {}}).dataset.messageId || ''`))
	if id == "" {
		t.Fatal("no message without a flag listed")
	}
	return id
}

// message is a message's summary as the store has it.
func (w *world) message(t *testing.T, id string) *mailbusv1.MessageSummary {
	t.Helper()
	resp, err := w.mailboxes.GetMessage(ctxFor(t), &mailbusv1.GetMessageRequest{MessageId: id})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Message.GetSummary()
}

// imapHasFlag checks whether the IMAP server's INBOX message with the
// Message-ID has the flag (want) or not.
func (w *world) imapHasFlag(messageID, flag string, want bool) error {
	msgs, err := w.imap.Messages("INBOX")
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if strings.Trim(m.MessageID, "<>") == strings.Trim(messageID, "<>") {
			if got := slices.Contains(m.Flags, flag); got != want {
				return fmt.Errorf("IMAP message %s: flags %v, want %s %v", messageID, m.Flags, flag, want)
			}
			return nil
		}
	}
	return fmt.Errorf("no message %s in the IMAP INBOX", messageID)
}

func inboxOf(msgs []demo.Message) []demo.Message {
	var out []demo.Message
	for _, m := range msgs {
		if m.Folder == "INBOX" {
			out = append(out, m)
		}
	}
	return out
}

// rawMessage is a one-part message with a unique Message-ID.
func rawMessage(subject, contentType, body string) []byte {
	return []byte(strings.ReplaceAll(fmt.Sprintf("From: Mallory <mallory@example.test>\nTo: demo@example.test\nSubject: %s\n"+
		"Date: %s\nMessage-ID: <%d@console.test>\nMIME-Version: 1.0\nContent-Type: %s\n\n%s\n",
		subject, time.Now().UTC().Format(time.RFC1123Z), time.Now().UnixNano(), contentType, body), "\n", "\r\n"))
}

// hostileHTML tries every way an HTML mail could run script or reach rec.
func hostileHTML(rec string) string {
	return strings.ReplaceAll(`<html><head>
<meta http-equiv="refresh" content="0;url=REC/refresh">
<base href="REC/base/">
<link rel="stylesheet" href="REC/stylesheet">
<link rel="prefetch" href="REC/prefetch">
<link rel="preload" as="image" href="REC/preload">
<link rel="icon" href="REC/icon">
<style>@import url("REC/import"); body { background: url("REC/background"); } @font-face { font-family: x; src: url("REC/font"); } p { font-family: x; }</style>
<script>fetch("REC/script-fetch"); new Image().src = "REC/script-image"; top.location = "REC/script-top";</script>
<script src="REC/script-src"></script>
</head><body onload="fetch('REC/onload')">
<p>A hostile message.</p>
<img src="REC/image" alt="remote image">
<img src="relative-image" alt="relative image">
<img src="data:image/gif;base64,not-a-gif" onerror="fetch('REC/onerror')" alt="">
<img srcset="REC/srcset 2x" alt="">
<iframe src="REC/iframe"></iframe>
<object data="REC/object"></object>
<embed src="REC/embed">
<video poster="REC/poster" src="REC/video" autoplay></video>
<audio src="REC/audio" autoplay></audio>
<svg><image href="REC/svg-image" width="10" height="10"/></svg>
<form action="REC/form" method="post"><input name="a" value="b" autofocus onfocus="fetch('REC/onfocus')"></form>
<a href="javascript:fetch('REC/js-link')">a link</a>
<div style="background-image: url('REC/inline-style')">styled</div>
</body></html>`, "REC", rec)
}

// recorder is an HTTP server that records every request it gets.
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.seen = append(r.seen, req.Method+" "+req.URL.Path)
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seen)
}
