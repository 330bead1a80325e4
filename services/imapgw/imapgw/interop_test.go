package imapgw

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// requireTool returns the path of a real mail client; outside CI a
// missing one skips the test, in CI (CI=true) it fails.
func requireTool(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not installed (apt-get install %s): CI needs it", name, pkg)
		}
		t.Skipf("%s not installed (apt-get install %s)", name, pkg)
	}
	return p
}

// mbsyncPull writes an mbsync configuration that pulls every folder of an
// account through the gateway into a maildir, and runs it; it returns the
// output.
func mbsyncPull(t *testing.T, bin, addr, user, token, dir string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cfg := fmt.Sprintf(`IMAPAccount gw
Host %s
Port %s
User %s
Pass %s
SSLType None
AuthMechs LOGIN

IMAPStore gw-far
Account gw

MaildirStore near
Path %s/
Inbox %s/INBOX
SubFolders Verbatim

Channel all
Far :gw-far:
Near :near:
Patterns *
Create Near
Sync Pull
SyncState *
`, host, port, user, token, dir, dir)
	cfgFile := filepath.Join(t.TempDir(), "mbsyncrc")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "-c", cfgFile, "all").CombinedOutput()
	if err != nil {
		t.Fatalf("mbsync: %v\n%s", err, out)
	}
	return string(out)
}

// maildirMessages reads every message of a maildir tree: folder name to
// the messages' bytes.
func maildirMessages(t *testing.T, dir string) map[string][][]byte {
	t.Helper()
	out := map[string][][]byte{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		sub := filepath.Base(filepath.Dir(p))
		if sub != "cur" && sub != "new" {
			return nil
		}
		folder, _ := filepath.Rel(dir, filepath.Dir(filepath.Dir(p)))
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[folder] = append(out[folder], b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMbsync: mbsync (isync), a real client, pulls every folder of an
// account through the gateway; what it stores matches the store byte for
// byte, and a second run transfers nothing.
func TestMbsync(t *testing.T) {
	bin := requireTool(t, "mbsync", "isync")
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	want := map[string][][]byte{}
	for _, name := range []string{"Archive", "Archive/2026", "Sent"} {
		if _, err := e.mailboxes().CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: acct.Id, Name: name, DeviceId: "test"}); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"INBOX", "INBOX", "INBOX", "Archive", "Archive/2026", "Sent", "Sent"} {
		mb := inbox
		if name != "INBOX" {
			mb = e.mailbox(acct.Id, name)
		}
		raw := testMail(fmt.Sprintf("m%d", i))
		if i == 2 {
			raw = "Subject: no final line break\r\n\r\nbody without CRLF" // byte-exact, even so
		}
		m := e.appendMsg(mb.Id, raw, `\Seen`)
		want[name] = append(want[name], e.rawMsg(m.Id))
	}
	tok, _ := e.token(true, acct.Id) // a read-only token suffices to pull
	gw := e.gateway(nil)
	dir := t.TempDir()
	out := mbsyncPull(t, bin, gw.addr, "work", tok, dir)
	got := maildirMessages(t, dir)
	for folder, msgs := range want {
		if len(got[folder]) != len(msgs) {
			t.Errorf("%s: mbsync got %d messages, the store has %d\n%s", folder, len(got[folder]), len(msgs), out)
			continue
		}
		for _, w := range msgs {
			// mbsync stores messages with the local line ending (LF) in
			// the maildir and adds its tracking header X-TUID at the end
			// of the header (it does so from any server); nothing else
			// may differ.
			w = bytes.ReplaceAll(w, []byte("\r\n"), []byte("\n"))
			found := false
			for _, g := range got[folder] {
				found = found || bytes.Equal(xTUID.ReplaceAll(g, nil), w)
			}
			if !found {
				t.Errorf("%s: no message byte-equal to the store's %q; mbsync's first: %q", folder, w, got[folder][0])
			}
		}
	}
	if len(got) != len(want) {
		t.Errorf("folders: mbsync %d, the store %d", len(got), len(want))
	}
	if n := e.rawReads.Load(); n != 7 {
		t.Errorf("the first run read %d messages from the store, want 7", n)
	}
	before := e.rawReads.Load()
	out2 := mbsyncPull(t, bin, gw.addr, "work", tok, dir)
	if n := e.rawReads.Load() - before; n != 0 {
		t.Errorf("the second run read %d messages, want none\n%s", n, out2)
	}
	if again := maildirMessages(t, dir); fmt.Sprint(counts(again)) != fmt.Sprint(counts(got)) {
		t.Errorf("second run: maildir %v, was %v", counts(again), counts(got))
	}

	// Another gateway (a restart, or another replica) serves the same
	// UIDVALIDITY and UIDs: mbsync reads nothing through it either.
	gw.stop()
	gw = e.gateway(nil)
	before = e.rawReads.Load()
	out3 := mbsyncPull(t, bin, gw.addr, "work", tok, dir)
	if n := e.rawReads.Load() - before; n != 0 {
		t.Errorf("the run through a new gateway read %d messages, want none\n%s", n, out3)
	}

	// A new message reaches the maildir on the next run, and only it is
	// read.
	e.appendMsg(inbox.Id, testMail("new"))
	before = e.rawReads.Load()
	mbsyncPull(t, bin, gw.addr, "work", tok, dir)
	if n := e.rawReads.Load() - before; n != 1 {
		t.Errorf("the last run read %d messages, want 1", n)
	}
	if again := maildirMessages(t, dir); len(again["INBOX"]) != 4 {
		t.Errorf("last run: INBOX has %d messages, want 4", len(again["INBOX"]))
	}
}

func counts(m map[string][][]byte) map[string]int {
	out := map[string]int{}
	for k, v := range m {
		out[k] = len(v)
	}
	return out
}

var xTUID = regexp.MustCompile(`(?m)^X-TUID: [A-Za-z0-9+/]+\n`)

// TestKill9: kill -9 of a gateway process and a new one: mbsync (which
// keeps UIDVALIDITY and UIDs in its state) finds everything as it was and
// its maildir does not change.
func TestKill9(t *testing.T) {
	bin := requireTool(t, "mbsync", "isync")
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	for i := range 5 {
		e.appendMsg(inbox.Id, testMail(fmt.Sprint(i)))
	}
	tok, _ := e.token(false, acct.Id)
	gwBin := buildGateway(t)
	addr, proc := startGatewayProcess(t, e, gwBin)
	dir := t.TempDir()
	mbsyncPull(t, bin, addr, "work", tok, dir)
	names := func() []string {
		var out []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.Contains(p, "/cur/") || strings.Contains(p, "/new/")) {
				out = append(out, p)
			}
			return nil
		})
		return out
	}
	before := names()
	if len(before) != 5 {
		t.Fatalf("mbsync pulled %d messages", len(before))
	}
	if err := proc.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	proc.Wait()
	addr2, _ := startGatewayProcess(t, e, gwBin)
	out := mbsyncPull(t, bin, addr2, "work", tok, dir)
	if after := names(); !slices.Equal(before, after) {
		t.Errorf("after kill -9 and a new gateway, the maildir changed: %v -> %v\n%s", before, after, out)
	}
}
