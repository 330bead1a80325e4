// Package demo holds mailbus's demo mail servers: an IMAP server (go-imap's
// in-memory imapmemserver) and a small POP3 server, both on loopback,
// seeded with realistic sample mail. `mailbus demo` runs them next to the
// all-in-one server; tests use them as upstream servers.
//
// The sample mail is deterministic: the same messages, dates and flags on
// every start.
package demo

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Message is one sample message.
type Message struct {
	// Folder is the IMAP folder ("INBOX" for POP3 mail).
	Folder string
	// Flags are IMAP flags such as \Seen.
	Flags []string
	// Date is the Date header and the internal date.
	Date time.Time
	// MessageID is the Message-ID without angle brackets.
	MessageID string
	// Subject is the Subject header.
	Subject string
	// Raw is the RFC 5322 message with CRLF line ends.
	Raw []byte
}

type person struct{ name, email string }

var (
	me       = person{"Alex Demo", "alex@demo.mailbus.test"}
	contacts = []person{
		{"Maria Garcia", "maria.garcia@northwind.example"},
		{"Tom Becker", "tom@becker-consulting.example"},
		{"Priya Natarajan", "priya@lumen-labs.example"},
		{"GitHub", "notifications@github.example"},
		{"Lena Hoffmann", "lena.hoffmann@stadtwerke.example"},
		{"Chen Wei", "wei.chen@harbor-freight.example"},
		{"Olivia Brown", "olivia@brown-family.example"},
		{"Acme Billing", "billing@acme-cloud.example"},
		{"Sam Okafor", "sam.okafor@lumen-labs.example"},
		{"Travel Desk", "travel@northwind.example"},
	}
)

// base is the date of the newest sample message.
var base = time.Date(2026, time.November, 20, 9, 30, 0, 0, time.UTC)

type sample struct {
	from, to   person
	subject    string
	body       string
	attachment *attachment
	flags      []string
	ageHours   int
}

type attachment struct {
	name, contentType string
	data              []byte
}

// Attachments: small but real files.
var (
	pdfData = []byte("%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")
	csvData = []byte("date,description,amount\n2026-10-01,Compute,412.50\n2026-10-01,Storage,88.10\n2026-10-01,Egress,19.95\n")
	// A 1x1 transparent PNG.
	pngData, _ = base64.StdEncoding.DecodeString("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")
	icsData    = []byte("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nSUMMARY:Quarterly review\r\nDTSTART:20261203T140000Z\r\nDTEND:20261203T150000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
)

var inboxSamples = []sample{
	{from: contacts[0], subject: "Q4 planning: agenda for Thursday", body: "Hi Alex,\n\nhere is the agenda for Thursday's planning session:\n\n1. Review of Q3 numbers\n2. Hiring plan\n3. Roadmap for the sync service\n\nPlease add anything I missed.\n\nMaria", flags: []string{`\Seen`}, ageHours: 1},
	{from: contacts[3], subject: "[mailbus/mailbus] Pull request #412: store: faster ingest", body: "@priya requested your review on this pull request.\n\nstore: batch inserts of up to 256 messages per transaction.\n\n-- \nReply to this email directly or view it on GitHub.", ageHours: 2},
	{from: contacts[7], subject: "Your invoice for October 2026", body: "Hello Alex,\n\nyour invoice for October 2026 is attached. The amount of EUR 520.55 will be charged to your card ending in 4242.\n\nThank you for using Acme Cloud.", attachment: &attachment{"invoice-2026-10.pdf", "application/pdf", pdfData}, ageHours: 5},
	{from: contacts[1], subject: "Re: contract renewal", body: "Alex,\n\nthanks for the quick reply. The renewal terms look fine to me; I'll send the signed copy on Monday.\n\nBest,\nTom", flags: []string{`\Seen`, `\Answered`}, ageHours: 9},
	{from: contacts[2], subject: "Lunch on Friday?", body: "Hey! Are you around on Friday? There's a new ramen place next to the office.\n\nPriya", ageHours: 20},
	{from: contacts[4], subject: "Zählerstand bitte bis 30.11. melden", body: "Sehr geehrte Kundin, sehr geehrter Kunde,\n\nbitte teilen Sie uns Ihren Zählerstand bis zum 30. November mit.\n\nMit freundlichen Grüßen\nIhre Stadtwerke", flags: []string{`\Seen`}, ageHours: 26},
	{from: contacts[5], subject: "Shipment 77-1042 delivered", body: "Your shipment 77-1042 was delivered at 14:12 and signed for by R. Jones.", flags: []string{`\Seen`}, ageHours: 30},
	{from: contacts[6], subject: "Photos from the weekend", body: "Here's the one of everyone at the lake :)\n\nLove,\nOlivia", attachment: &attachment{"lake.png", "image/png", pngData}, flags: []string{`\Seen`, `\Flagged`}, ageHours: 40},
	{from: contacts[8], subject: "Design doc: delta sync for devices", body: "Hi Alex,\n\nI wrote up how devices should follow an account: a state token, GetChanges for the delta, and a live stream. JMAP's /changes is the model.\n\nComments welcome before Wednesday.\n\nSam", flags: []string{`\Flagged`}, ageHours: 50},
	{from: contacts[9], subject: "Your trip to Lisbon: itinerary", body: "Dear Alex Demo,\n\nFlight NW 1432, Dec 3, 07:45 from FRA to LIS. Hotel: Casa do Rio, 3 nights.\n\nHave a good trip!", attachment: &attachment{"itinerary.ics", "text/calendar", icsData}, flags: []string{`\Seen`}, ageHours: 60},
	{from: contacts[3], subject: "[mailbus/mailbus] Issue #398: IDLE reconnect loses a flag change", body: "sam opened an issue:\n\nAfter a network drop during IDLE, a flag change made on another client was not picked up until the next full sync.", ageHours: 70},
	{from: contacts[0], subject: "Offsite dates", body: "Team,\n\nthe offsite will be March 10-12. Please block your calendars.\n\nMaria", flags: []string{`\Seen`}, ageHours: 90},
	{from: contacts[7], subject: "Usage report October 2026", body: "Your usage report for October is attached as CSV.", attachment: &attachment{"usage-2026-10.csv", "text/csv", csvData}, flags: []string{`\Seen`}, ageHours: 100},
	{from: contacts[2], subject: "Re: conference talk", body: "Yes, the talk was recorded. I'll send you the link once it's up.\n\nPriya", flags: []string{`\Seen`}, ageHours: 120},
	{from: contacts[1], subject: "Quick question about the API", body: "Does WatchChanges replay from a state, or only send new events?\n\nTom", ageHours: 130},
	{from: contacts[5], subject: "Customs documents needed", body: "Please send the commercial invoice for shipment 77-1051 so we can clear customs.", flags: []string{`\Seen`}, ageHours: 150},
}

var sentSamples = []sample{
	{to: contacts[1], subject: "Re: contract renewal", body: "Hi Tom,\n\nthe renewal terms are attached. Let me know if anything needs changing.\n\nAlex", attachment: &attachment{"renewal-terms.pdf", "application/pdf", pdfData}, flags: []string{`\Seen`}, ageHours: 10},
	{to: contacts[0], subject: "Re: Q4 planning: agenda for Thursday", body: "Looks good. Could we add 15 minutes on the on-call rotation?\n\nAlex", flags: []string{`\Seen`}, ageHours: 1},
	{to: contacts[8], subject: "Re: Design doc: delta sync for devices", body: "Great write-up. One question: what happens when the state is older than the change log?\n\nAlex", flags: []string{`\Seen`}, ageHours: 45},
	{to: contacts[6], subject: "Re: Photos from the weekend", body: "These are lovely, thank you!", flags: []string{`\Seen`}, ageHours: 38},
	{to: contacts[9], subject: "Hotel preference for Lisbon", body: "Hi, could you book something near the river? Thanks, Alex", flags: []string{`\Seen`}, ageHours: 200},
	{to: contacts[4], subject: "Zählerstand 48213", body: "Guten Tag,\n\nmein Zählerstand am 18.11.: 48213 kWh.\n\nViele Grüße\nAlex Demo", flags: []string{`\Seen`}, ageHours: 24},
}

var archiveSamples = []sample{
	{from: contacts[7], subject: "Your invoice for September 2026", body: "Your invoice for September 2026 is attached.", attachment: &attachment{"invoice-2026-09.pdf", "application/pdf", pdfData}, flags: []string{`\Seen`}, ageHours: 24 * 50},
	{from: contacts[7], subject: "Your invoice for August 2026", body: "Your invoice for August 2026 is attached.", attachment: &attachment{"invoice-2026-08.pdf", "application/pdf", pdfData}, flags: []string{`\Seen`}, ageHours: 24 * 81},
	{from: contacts[0], subject: "Welcome to Northwind!", body: "Welcome aboard, Alex! Your laptop will be ready on Monday.", flags: []string{`\Seen`, `\Flagged`}, ageHours: 24 * 300},
	{from: contacts[2], subject: "Slides from the kickoff", body: "Attached are the kickoff slides (as PDF).", attachment: &attachment{"kickoff.pdf", "application/pdf", pdfData}, flags: []string{`\Seen`}, ageHours: 24 * 120},
	{from: contacts[5], subject: "Shipment 77-0988 delivered", body: "Your shipment 77-0988 was delivered.", flags: []string{`\Seen`}, ageHours: 24 * 95},
	{from: contacts[9], subject: "Your trip to Oslo: receipts", body: "The receipts of your Oslo trip are attached.", attachment: &attachment{"receipts.csv", "text/csv", csvData}, flags: []string{`\Seen`}, ageHours: 24 * 140},
	{from: contacts[1], subject: "Kickoff notes", body: "Notes from our kickoff call are below.\n\n- Scope: sync service\n- Timeline: 8 weeks", flags: []string{`\Seen`}, ageHours: 24 * 118},
	{from: contacts[6], subject: "Happy birthday!", body: "Happy birthday, Alex! Dinner on Saturday?", flags: []string{`\Seen`}, ageHours: 24 * 200},
}

var pop3Samples = []sample{
	{from: contacts[4], subject: "Ihre Abschlagszahlung ab Januar", body: "Ihre monatliche Abschlagszahlung ab Januar 2027 beträgt 84,00 EUR.", ageHours: 3},
	{from: contacts[7], subject: "Payment received, thank you", body: "We received your payment of EUR 520.55. Thank you!", ageHours: 8},
	{from: contacts[6], subject: "Recipe you asked for", body: "Here it is: 500 g flour, 300 ml water, 10 g salt, 5 g yeast. Bake at 250 °C.", ageHours: 16},
	{from: contacts[5], subject: "Delivery window tomorrow 8-12", body: "Your delivery 77-1060 arrives tomorrow between 8 and 12.", ageHours: 22},
	{from: contacts[9], subject: "Boarding pass NW 1432", body: "Your boarding pass is attached.", attachment: &attachment{"boarding-pass.pdf", "application/pdf", pdfData}, ageHours: 28},
	{from: contacts[3], subject: "[mailbus/mailbus] Release v0.3.0", body: "mailbus v0.3.0 is out: the all-in-one binary and make demo.", ageHours: 35},
	{from: contacts[0], subject: "Newsletter: November", body: "This month: the new office, two new colleagues, and the winter party.", ageHours: 44},
	{from: contacts[8], subject: "Shared folder invitation", body: "Sam shared the folder \"Sync design\" with you.", ageHours: 52},
}

// IMAPUser, IMAPPassword, POP3User and POP3Password are the demo
// servers' logins.
const (
	IMAPUser     = "alex"
	IMAPPassword = "demo-imap-password"
	POP3User     = "alex"
	POP3Password = "demo-pop3-password"
)

// IMAPFolders are the demo IMAP server's folders.
var IMAPFolders = []string{"INBOX", "Sent", "Archive", "Drafts"}

// IMAPMessages returns the sample mail of the IMAP server, by folder.
func IMAPMessages() []Message {
	var out []Message
	add := func(folder string, samples []sample, sent bool) {
		for i, s := range samples {
			if sent {
				s.from = me
			} else {
				s.to = me
			}
			out = append(out, build(folder, i, s))
		}
	}
	add("INBOX", inboxSamples, false)
	add("Sent", sentSamples, true)
	add("Archive", archiveSamples, false)
	out = append(out, build("Drafts", 0, sample{from: me, to: contacts[2], subject: "Talk proposal (draft)", body: "Title: Mail as events\n\nAbstract: TODO", flags: []string{`\Draft`}, ageHours: 4}))
	return out
}

// POP3Messages returns the sample mail of the POP3 server.
func POP3Messages() []Message {
	var out []Message
	for i, s := range pop3Samples {
		s.to = person{"Alex Demo", "alex@old-isp.example"}
		out = append(out, build("INBOX", i, s))
	}
	return out
}

func build(folder string, i int, s sample) Message {
	date := base.Add(-time.Duration(s.ageHours) * time.Hour)
	id := fmt.Sprintf("%s.%d.%d@demo.mailbus.test", strings.ToLower(folder), i, date.Unix())
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	h("Return-Path", "<"+s.from.email+">")
	h("Received", fmt.Sprintf("from mx.%s by mx.demo.mailbus.test with ESMTPS; %s", domain(s.from.email), date.Format(time.RFC1123Z)))
	h("From", addr(s.from))
	h("To", addr(s.to))
	h("Subject", encodeHeader(s.subject))
	h("Date", date.Format(time.RFC1123Z))
	h("Message-ID", "<"+id+">")
	if strings.HasPrefix(s.subject, "Re: ") {
		h("In-Reply-To", fmt.Sprintf("<thread.%d@%s>", i, domain(s.to.email)))
	}
	h("MIME-Version", "1.0")
	body := strings.ReplaceAll(s.body, "\n", "\r\n") + "\r\n"
	if s.attachment == nil {
		h("Content-Type", "text/plain; charset=utf-8")
		h("Content-Transfer-Encoding", "8bit")
		b.WriteString("\r\n")
		b.WriteString(body)
	} else {
		boundary := fmt.Sprintf("=_mailbus_demo_%d_%d", i, date.Unix())
		h("Content-Type", fmt.Sprintf("multipart/mixed; boundary=%q", boundary))
		b.WriteString("\r\nThis is a multi-part message in MIME format.\r\n")
		fmt.Fprintf(&b, "--%s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n%s", boundary, body)
		fmt.Fprintf(&b, "--%s\r\nContent-Type: %s; name=%q\r\nContent-Disposition: attachment; filename=%q\r\nContent-Transfer-Encoding: base64\r\n\r\n",
			boundary, s.attachment.contentType, s.attachment.name, s.attachment.name)
		enc := base64.StdEncoding.EncodeToString(s.attachment.data)
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
		fmt.Fprintf(&b, "--%s--\r\n", boundary)
	}
	return Message{Folder: folder, Flags: s.flags, Date: date, MessageID: id, Subject: s.subject, Raw: b.Bytes()}
}

func addr(p person) string {
	if p.name == "" {
		return p.email
	}
	return fmt.Sprintf("%s <%s>", encodeHeader(p.name), p.email)
}

func domain(email string) string {
	_, d, _ := strings.Cut(email, "@")
	return d
}

// encodeHeader encodes non-ASCII text as an RFC 2047 encoded word.
func encodeHeader(s string) string {
	for _, r := range s {
		if r > 127 {
			return "=?utf-8?b?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?="
		}
	}
	return s
}

var newMailSamples = []sample{
	{from: contacts[3], subject: "[mailbus/mailbus] New comment on pull request #412", body: "priya commented: Looks good to me, one nit about the batch size."},
	{from: contacts[0], subject: "Quick sync at 3?", body: "Do you have 15 minutes at 3 pm? Maria"},
	{from: contacts[7], subject: "Your invoice for November 2026", body: "Your invoice for November 2026 is attached.", attachment: &attachment{"invoice-2026-11.pdf", "application/pdf", pdfData}},
	{from: contacts[5], subject: "Shipment 77-1077 is out for delivery", body: "Your shipment 77-1077 is out for delivery today."},
	{from: contacts[2], subject: "Slides for Thursday", body: "Here is the draft deck; comments welcome."},
}

// NewMail returns the n-th message of the demo's stream of new mail
// (n from 0), dated now: the demo delivers them while it runs.
func NewMail(n int, now time.Time) Message {
	s := newMailSamples[n%len(newMailSamples)]
	s.to = me
	m := build("new", n, sample{from: s.from, to: s.to, subject: s.subject, body: s.body, attachment: s.attachment})
	// build dates a sample by its age; new mail is dated now.
	raw := strings.Replace(string(m.Raw), m.Date.Format(time.RFC1123Z), now.UTC().Format(time.RFC1123Z), -1)
	id := fmt.Sprintf("new.%d.%d@demo.mailbus.test", n, now.UnixNano())
	raw = strings.Replace(raw, "<"+m.MessageID+">", "<"+id+">", 1)
	return Message{Folder: "INBOX", Date: now.UTC(), MessageID: id, Subject: s.subject, Raw: []byte(raw)}
}
