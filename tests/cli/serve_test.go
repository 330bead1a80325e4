package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/natsperm"
	"github.com/mailbus/mailbus/services/mailbus/demo"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// The NATS consumer user startServe gives the first account.
const natsUser, natsPassword = "e2e", "e2e-nats-password"

// startServe runs `mailbus serve` with its own data directory, the store
// and the embedded NATS server on ports of their choosing, and waits until
// it serves; it returns the NATS address serve announces.
//
// Port 0 lets serve's own listeners take the ports: a port the test found
// free and released could be taken by another process (a client's
// outgoing connection, another test) before serve bound it.
func startServe(t *testing.T, extra ...string) (c *cli, p *proc, natsAddr string) {
	t.Helper()
	c = &cli{t: t, bin: mailbusBin(t)}
	data := filepath.Join(t.TempDir(), "data")
	// A NATS consumer user of the first account, which the embedded NATS
	// server reads at start.
	if err := os.MkdirAll(data, 0o700); err != nil {
		t.Fatal(err)
	}
	users := `[{"user": "` + natsUser + `", "password": "` + natsPassword + `", "account_id": "1"}]`
	if err := os.WriteFile(filepath.Join(data, mailbus.NATSUsersFileName), []byte(users), 0o600); err != nil {
		t.Fatal(err)
	}
	// The client commands find serve's admin token in $MAILBUS_DATA.
	c.env = append(c.env, "MAILBUS_DATA="+data)
	const anyPort = "127.0.0.1:0"
	args := append([]string{"serve", "--data", data, "--listen", anyPort, "--metrics-listen", anyPort, "--nats-listen", anyPort, "--imap-listen", anyPort}, extra...)
	p = c.start(args...)
	p.waitLine("the ready banner", func(l string) bool { return strings.HasPrefix(l, "mailbus is running") })
	c.server = bannerField(t, p, "  store (gRPC):")
	natsAddr = strings.TrimPrefix(bannerField(t, p, "  NATS:"), "nats://")
	for _, addr := range []string{c.server, natsAddr} {
		mustBound(t, addr)
	}
	return c, p, natsAddr
}

// bannerField is the first word after prefix in a line of serve's banner.
func bannerField(t *testing.T, p *proc, prefix string) string {
	t.Helper()
	l := p.waitLine("the banner's "+strings.TrimSpace(prefix)+" line", func(l string) bool { return strings.HasPrefix(l, prefix) })
	fields := strings.Fields(strings.TrimPrefix(l, prefix))
	if len(fields) == 0 {
		t.Fatalf("banner line %q: no address", l)
	}
	return fields[0]
}

// serveMetricsAddr is the /metrics address of a serve started with
// --metrics-listen on port 0, from the store's log line "serving" (serve
// knows only the address asked for; the line needs log level info).
func serveMetricsAddr(t *testing.T, p *proc) string {
	t.Helper()
	var addr string
	eventually(t, "the log line naming the metrics address", func() error {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			// The store's line: the in-process fetchers log one each too,
			// with metrics="" (they serve no port of their own).
			if !strings.Contains(l, "msg=serving") || !strings.Contains(l, " service=store ") {
				continue
			}
			for _, f := range strings.Fields(l) {
				if a, ok := strings.CutPrefix(f, "metrics="); ok && strings.Trim(a, `"`) != "" {
					addr = strings.Trim(a, `"`)
					return nil
				}
			}
		}
		return fmt.Errorf("stderr:\n%s", p.stderr)
	})
	mustBound(t, addr)
	return addr
}

func accountJSON(t *testing.T, c *cli, name string) *mailbusv1.Account {
	t.Helper()
	r := c.ok("account", "show", name, "--json")
	accts := jsonLines(t, r.stdout, func() *mailbusv1.Account { return &mailbusv1.Account{} })
	if len(accts) != 1 {
		t.Fatalf("account show --json: %d objects\n%s", len(accts), r)
	}
	return accts[0]
}

// waitIdle waits until `status --json` reports the account idle after a
// successful pass.
func waitIdle(t *testing.T, c *cli, name string) {
	t.Helper()
	eventually(t, "account "+name+" idle", func() error {
		r := c.run("status", "--account", name, "--json")
		if r.code != 0 {
			return fmt.Errorf("%s", r)
		}
		accts := jsonLines(t, r.stdout, func() *mailbusv1.Account { return &mailbusv1.Account{} })
		if len(accts) != 1 {
			return fmt.Errorf("status --json: %d objects", len(accts))
		}
		st := accts[0].GetStatus()
		if st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
			t.Fatalf("account %s parked: %s", name, st.GetReason())
		}
		if st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || st.GetLastSuccessTime() == nil {
			return fmt.Errorf("state %s", st.GetState())
		}
		return nil
	})
}

func messageIDsOf(msgs []*mailbusv1.MessageSummary) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.GetEnvelope().GetMessageId())
	}
	sort.Strings(out)
	return out
}

func sortedFlags(f []string) []string {
	out := slices.Clone(f)
	for i := range out {
		out[i] = strings.ToLower(out[i])
	}
	sort.Strings(out)
	return out
}

// TestServeEndToEnd drives `mailbus serve` as a user would: accounts added
// with the CLI against the demo IMAP and POP3 servers, status until idle,
// the listed messages against what the servers hold, and a flag change
// seen by a concurrent `watch --json`, by a NATS consumer on --nats-listen,
// and on the IMAP server (write-back).
func TestServeEndToEnd(t *testing.T) {
	imapSrv, err := demo.StartIMAP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer imapSrv.Close()
	popSrv, err := demo.StartPOP3("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer popSrv.Close()

	c, serve, natsAddr := startServe(t)
	metricsAddr := serveMetricsAddr(t, serve)
	// serve does not know the port the store's metrics listener took:
	// its banner names none rather than port 0.
	if out := serve.stdout.String(); strings.Contains(out, "metrics:") {
		t.Errorf("the banner names a metrics address for --metrics-listen 127.0.0.1:0:\n%s", out)
	}
	c.env = append(c.env, "IMAP_PW="+demo.IMAPPassword)
	pwFile := filepath.Join(t.TempDir(), "pop3-pw")
	if err := os.WriteFile(pwFile, []byte(demo.POP3Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	c.ok("account", "add", "--name", "mail", "--protocol", "imap", "--host", "127.0.0.1",
		"--port", fmt.Sprint(imapSrv.Addr().Port), "--security", "none", "--username", demo.IMAPUser, "--password-env", "IMAP_PW")
	c.ok("account", "add", "--name", "old-isp", "--protocol", "pop3", "--host", "127.0.0.1",
		"--port", fmt.Sprint(popSrv.Addr().Port), "--security", "none", "--username", demo.POP3User, "--password-file", pwFile)
	// A refused login shows in the account's status, with what to do; the
	// password typed on standard input.
	r := c.runIn("wrong-password\n", "account", "add", "--name", "refused", "--protocol", "imap", "--host", "127.0.0.1",
		"--port", fmt.Sprint(imapSrv.Addr().Port), "--security", "none", "--username", demo.IMAPUser)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	r = c.ok("account", "add", "--name", "dup", "--protocol", "imap", "--host", "h", "--username", "u", "--password-env", "IMAP_PW", "--json")
	if got := jsonLines(t, r.stdout, func() *mailbusv1.Account { return &mailbusv1.Account{} }); len(got) != 1 || got[0].Port != 993 {
		t.Fatalf("account add --json: %s", r)
	}
	c.ok("account", "remove", "dup")

	waitIdle(t, c, "mail")
	waitIdle(t, c, "old-isp")
	eventually(t, "the refused login parks the account", func() error {
		r := c.ok("account", "show", "refused")
		if !strings.Contains(r.stdout, "state:      parked") || !strings.Contains(r.stdout, "refused the login") {
			return fmt.Errorf("%s", r.stdout)
		}
		return nil
	})
	if r := c.ok("status"); !strings.Contains(r.stdout, "refused: the server refused the login") || !strings.Contains(r.stdout, "mailbus account update refused --password") {
		t.Fatalf("status does not explain the refused login:\n%s", r)
	}
	// The fix it suggests works: the account syncs.
	c.ok("account", "update", "refused", "--password-env", "IMAP_PW")
	waitIdle(t, c, "refused")
	c.ok("account", "remove", "refused")

	// Every IMAP folder as the server holds it: the same messages with the
	// same flags.
	mboxes := jsonLines(t, c.ok("mailbox", "list", "--account", "mail", "--json").stdout, func() *mailbusv1.Mailbox { return &mailbusv1.Mailbox{} })
	var names []string
	for _, m := range mboxes {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	if want := slices.Sorted(slices.Values(demo.IMAPFolders)); !slices.Equal(names, want) {
		t.Fatalf("mailboxes %v, want %v", names, want)
	}
	for _, folder := range demo.IMAPFolders {
		held, err := imapSrv.Messages(folder)
		if err != nil {
			t.Fatal(err)
		}
		listed := jsonLines(t, c.ok("message", "list", "--account", "mail", "--mailbox", folder, "--limit", "0", "--json").stdout,
			func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} })
		if len(listed) != len(held) {
			t.Fatalf("%s: %d messages listed, the server holds %d", folder, len(listed), len(held))
		}
		byID := map[string]*mailbusv1.MessageSummary{}
		for _, m := range listed {
			byID[m.GetEnvelope().GetMessageId()] = m
		}
		for _, h := range held {
			m := byID[h.MessageID]
			if m == nil {
				t.Fatalf("%s: %s (%q) not listed", folder, h.MessageID, h.Subject)
			}
			if !slices.Equal(sortedFlags(m.Flags), sortedFlags(h.Flags)) {
				t.Fatalf("%s %s: flags %v, the server has %v", folder, h.MessageID, m.Flags, h.Flags)
			}
		}
	}
	// The POP3 maildrop.
	popListed := jsonLines(t, c.ok("message", "list", "--account", "old-isp", "--limit", "0", "--json").stdout,
		func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} })
	var popWant []string
	for _, m := range demo.POP3Messages() {
		popWant = append(popWant, m.MessageID)
	}
	sort.Strings(popWant)
	if got := messageIDsOf(popListed); !slices.Equal(got, popWant) {
		t.Fatalf("POP3 messages %v, want %v", got, popWant)
	}
	// message raw is byte-exact.
	raw := c.ok("message", "raw", popListed[0].Id).stdout
	found := false
	for _, m := range demo.POP3Messages() {
		if string(m.Raw) == raw {
			found = true
		}
	}
	if !found {
		t.Fatalf("message raw %s is not byte-exact:\n%s", popListed[0].Id, raw)
	}

	// A NATS consumer on --nats-listen, with the consumer user of the
	// account (the first one: id 1); without a user it is refused.
	if nc, err := nats.Connect("nats://" + natsAddr); err == nil {
		nc.Close()
		t.Fatal("the embedded NATS server let a connection without a user in")
	}
	nc, err := nats.Connect("nats://"+natsAddr, nats.UserInfo(natsUser, natsPassword))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.NewWithAPIPrefix(nc, natsperm.ConsumerAPIPrefix)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()

	// flag add on the newest INBOX message, watched.
	acct := accountJSON(t, c, "mail")
	inbox := jsonLines(t, c.ok("message", "list", "--account", "mail", "--limit", "1", "--json").stdout,
		func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} })
	target := inbox[0]
	if slices.Contains(target.Flags, `\Flagged`) {
		t.Fatalf("message %s is already flagged", target.Id)
	}
	if acct.Id != "1" {
		t.Fatalf("account mail has id %s; the NATS user is for account 1", acct.Id)
	}
	cons, err := js.Consumer(ctx, events.StreamName, natsUser)
	if err != nil {
		t.Fatal(err)
	}
	watch := c.start("watch", "--account", "mail", "--since", fmt.Sprint(acct.State), "--json")
	c.ok("flag", "add", "--account", "mail", target.Id, "flagged", "--device", "e2e-test")

	line := watch.waitLine("the flag change in watch --json", func(l string) bool {
		return strings.Contains(l, "messageUpdated") && strings.Contains(l, `"id":"`+target.Id+`"`)
	})
	ev := jsonLines(t, line, func() *mailbusv1.Event { return &mailbusv1.Event{} })[0]
	if u := ev.GetMessageUpdated(); !slices.Contains(u.GetFlagsAdded(), `\Flagged`) || ev.GetOrigin().GetDeviceId() != "e2e-test" {
		t.Fatalf("watch event: %s", line)
	}
	for {
		msg, err := cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			t.Fatalf("NATS: no message.updated event: %v", err)
		}
		got, err := events.Unmarshal(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		if got.GetMessageUpdated().GetMessage().GetId() == target.Id && got.GetOrigin().GetDeviceId() == "e2e-test" {
			break
		}
	}
	if code := watch.interrupt(); code != 0 {
		t.Fatalf("watch exit %d after SIGINT", code)
	}
	// Written back to the IMAP server.
	eventually(t, "the flag on the IMAP server", func() error {
		held, err := imapSrv.Messages("INBOX")
		if err != nil {
			return err
		}
		for _, h := range held {
			if h.MessageID == target.GetEnvelope().GetMessageId() {
				if slices.Contains(h.Flags, `\Flagged`) {
					return nil
				}
				return fmt.Errorf("flags on the server: %v", h.Flags)
			}
		}
		return fmt.Errorf("message %s not on the server", target.GetEnvelope().GetMessageId())
	})

	// An attachment, decoded, to a file.
	for _, m := range jsonLines(t, c.ok("message", "list", "--account", "mail", "--mailbox", "Archive", "--limit", "0", "--json").stdout,
		func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} }) {
		if !m.HasAttachments {
			continue
		}
		full := jsonLines(t, c.ok("message", "show", m.Id, "--json").stdout, func() *mailbusv1.Message { return &mailbusv1.Message{} })[0]
		out := filepath.Join(t.TempDir(), "attachment")
		c.ok("message", "attachment", m.Id, full.Attachments[0].PartId, "-o", out)
		got, err := os.ReadFile(out)
		if err != nil || uint64(len(got)) == 0 || full.Attachments[0].Filename == "" {
			t.Fatalf("attachment %s of %s: %d bytes, %v", full.Attachments[0].PartId, m.Id, len(got), err)
		}
		if strings.HasSuffix(full.Attachments[0].Filename, ".pdf") && !strings.HasPrefix(string(got), "%PDF-") {
			t.Fatalf("%s is not a decoded PDF: %q", full.Attachments[0].Filename, got)
		}
		if r := c.run("message", "attachment", m.Id, "9.9"); r.code != 1 || !strings.Contains(r.stderr, "has no part 9.9") {
			t.Fatalf("missing part: %s", r)
		}
		break
	}

	// The delta since the watch's state names the flagged message.
	changes := jsonLines(t, c.ok("changes", "--account", "mail", "--since", fmt.Sprint(acct.State), "--json").stdout,
		func() *mailbusv1.GetChangesResponse { return &mailbusv1.GetChangesResponse{} })
	if len(changes) != 1 || !slices.Contains(changes[0].UpdatedMessageIds, target.Id) || changes[0].NewState <= acct.State {
		t.Fatalf("changes since %d: %v", acct.State, changes)
	}

	// Mailbox operations and a delete made with the CLI reach the server.
	onServer := func(folder string) error {
		_, err := imapSrv.Messages(folder)
		return err
	}
	c.ok("mailbox", "create", "--account", "mail", "Projects")
	eventually(t, "the new folder on the server", func() error { return onServer("Projects") })
	c.ok("mailbox", "rename", "--account", "mail", "Projects", "Clients")
	eventually(t, "the renamed folder on the server", func() error {
		if onServer("Projects") == nil {
			return fmt.Errorf("Projects still there")
		}
		return onServer("Clients")
	})
	c.ok("mailbox", "delete", "--account", "mail", "Clients")
	eventually(t, "the folder deleted on the server", func() error {
		if onServer("Clients") == nil {
			return fmt.Errorf("Clients still there")
		}
		return nil
	})
	archive := jsonLines(t, c.ok("message", "list", "--account", "mail", "--mailbox", "Archive", "--limit", "1", "--json").stdout,
		func() *mailbusv1.MessageSummary { return &mailbusv1.MessageSummary{} })
	c.ok("message", "delete", archive[0].Id)
	eventually(t, "the deleted message gone from the server", func() error {
		held, err := imapSrv.Messages("Archive")
		if err != nil {
			return err
		}
		for _, h := range held {
			if h.MessageID == archive[0].GetEnvelope().GetMessageId() {
				return fmt.Errorf("still in Archive")
			}
		}
		return nil
	})

	// One /metrics for the three services.
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`service="store"`, "mailbus_imapsync_messages_total", "mailbus_pop3_messages_fetched_total", "mailbus_store_outbox_backlog", "go_goroutines"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// SIGTERM stops serve gracefully.
	serve.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-serve.done:
		if serve.err != nil {
			t.Fatalf("serve after SIGTERM: %v\n%s", serve.err, serve.stderr)
		}
	case <-time.After(waitLong):
		t.Fatal("serve did not stop after SIGTERM")
	}
}
