package cli

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errb, Getenv: func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}})
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	if code, out, _ := run(t, nil, "version"); code != ExitOK || !strings.HasPrefix(out, "mailbus ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := run(t, nil, "message", "show", "x"); code != ExitUsage || !strings.Contains(errOut, "Usage: mailbus message show ID") {
		t.Fatalf("usage: %d %q", code, errOut)
	}
	// MAILBUS_SERVER is the default of --server.
	code, _, errOut := run(t, map[string]string{"MAILBUS_SERVER": "127.0.0.1:1"}, "account", "list")
	if code != ExitError || !strings.Contains(errOut, "cannot reach the mailbus store at 127.0.0.1:1 (connection refused)") {
		t.Fatalf("unreachable: %d %q", code, errOut)
	}
	if code, _, errOut := run(t, nil, "--server", "", "account", "list"); code != ExitUsage || !strings.Contains(errOut, "--server is empty") {
		t.Fatalf("empty server: %d %q", code, errOut)
	}
}

func TestHelpShowsEnvAndRedacts(t *testing.T) {
	_, out, _ := run(t, map[string]string{"MAILBUS_DATABASE_URL": "postgres://u:hunter2@db/mailbus"}, "serve", "--help")
	if strings.Contains(out, "hunter2") || !strings.Contains(out, "MAILBUS_DATABASE_URL") || !strings.Contains(out, "postgres://u:xxxxx@db/mailbus") {
		t.Fatalf("serve --help:\n%s", out)
	}
}

// TestHelpText checks every command's --help: no flag's argument is named
// by a backquoted word of its usage (pflag's convention, which turned
// "a local `mailbus serve`" into "--token mailbus serve"), and no flag
// shows two defaults (demo's --data did: a temporary directory, and
// "./mailbus-data").
func TestHelpText(t *testing.T) {
	a := &app{io: IO{Getenv: func(string) (string, bool) { return "", false }}}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		check := func(f *pflag.Flag) {
			if strings.Contains(f.Usage, "`") {
				t.Errorf("%s --%s: usage has a backquote, which pflag takes as the argument's name: %q", c.CommandPath(), f.Name, f.Usage)
			}
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" && strings.Contains(f.Usage, "default") &&
				!strings.Contains(f.Usage, f.DefValue) {
				t.Errorf("%s --%s: usage names a default and the flag shows another, %q: %q", c.CommandPath(), f.Name, f.DefValue, f.Usage)
			}
		}
		c.LocalFlags().VisitAll(check)
		c.InheritedFlags().VisitAll(check)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(a.rootCommand())

	_, out, _ := run(t, nil, "demo", "--help")
	line := ""
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "--data string") {
			line = l
		}
	}
	if !strings.Contains(line, "a temporary one") || strings.Contains(line, "(default") {
		t.Errorf("demo --help, --data: want the temporary directory as the only default: %q", line)
	}
	_, out, _ = run(t, nil, "account", "list", "--help")
	if !strings.Contains(out, "--token string") || strings.Contains(out, "--token mailbus") {
		t.Errorf("account list --help, --token:\n%s", out)
	}
}

func TestProgramName(t *testing.T) {
	for argv0, want := range map[string]string{
		"mailbus":                "mailbus",
		"./bin/mailbus":          "./bin/mailbus",
		"bin/mailbus":            "bin/mailbus",
		"/usr/local/bin/mailbus": "/usr/local/bin/mailbus",
		"/home/a b/mailbus":      "mailbus",
		"/tmp/$x/mailbus":        "mailbus",
	} {
		if got := ProgramName(argv0); got != want {
			t.Errorf("ProgramName(%q) = %q, want %q", argv0, got, want)
		}
	}
}

func TestSplitFlagArgs(t *testing.T) {
	ids, flags, err := splitFlagArgs([]string{"12", "seen", `\Flagged`, "$Important", "34", "READ"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ids, []string{"12", "34"}) || !slices.Equal(flags, []string{`\Seen`, `\Flagged`, "$Important", `\Seen`}) {
		t.Fatalf("ids %v flags %v", ids, flags)
	}
	for _, bad := range [][]string{{"12"}, {"seen"}, {"12", "a b"}} {
		if _, _, err := splitFlagArgs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestFindMailbox(t *testing.T) {
	acct := &mailbusv1.Account{Name: "work"}
	boxes := []*mailbusv1.Mailbox{{Id: "1", Name: "INBOX"}, {Id: "2", Name: "Archive"}, {Id: "3", Name: "2024"}}
	for ref, want := range map[string]string{"INBOX": "1", "inbox": "1", "Archive": "2", "archive": "2", "2": "2", "2024": "3"} {
		m, err := findMailbox(boxes, acct, ref)
		if err != nil || m.Id != want {
			t.Errorf("%q: %v %v, want id %s", ref, m, err, want)
		}
	}
	if _, err := findMailbox(boxes, acct, "Trash"); err == nil || !strings.Contains(err.Error(), "it has: 2024, Archive, INBOX") {
		t.Errorf("unknown mailbox: %v", err)
	}
}

func TestProgress(t *testing.T) {
	p := &mailbusv1.SyncProgress{FoldersDone: 1, FoldersTotal: 4, MessagesDone: 50, MessagesTotal: 200, BytesDone: 5e6, BytesTotal: 20e6}
	if got := progressBar(p, 20); got != "[#####---------------]" {
		t.Errorf("bar %s", got)
	}
	if got := progressText(p); got != " 25% folders 1/4 messages 50/200 5.0 MB/20.0 MB" {
		t.Errorf("text %q", got)
	}
	var r rateMeter
	now := time.Unix(1000, 0)
	r.add(now, &mailbusv1.AccountStatus{Progress: &mailbusv1.SyncProgress{BytesDone: 1e6, BytesTotal: 20e6}})
	r.add(now.Add(time.Second), &mailbusv1.AccountStatus{Progress: p})
	if got := r.String(p); got != ", 4.0 MB/s, ETA 4s" {
		t.Errorf("rate %q", got)
	}
}

func TestStateHint(t *testing.T) {
	parked := func(reason string) *mailbusv1.Account {
		return &mailbusv1.Account{Name: "work", Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: reason}}
	}
	for reason, want := range map[string]string{
		"the server certificate does not verify: x509: certificate signed by unknown authority": "--insecure-skip-verify",
		"authentication failed: imap: NO [AUTHENTICATIONFAILED] Authentication failed":          "account update work --password",
		"pop3: -ERR [AUTH] invalid user name or password":                                       "account update work --password",
		"something else": "mailbus account update work",
	} {
		if got := stateHint(parked(reason)); !strings.Contains(got, want) {
			t.Errorf("%q: hint %q, want it to contain %q", reason, got, want)
		}
	}
	retrying := &mailbusv1.Account{Name: "w", Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_RETRYING, Reason: "dial tcp 127.0.0.1:1: connect: connection refused"}}
	if got := stateHint(retrying); !strings.Contains(got, "cannot be reached") {
		t.Errorf("retrying: %q", got)
	}
}

func TestTerminalRows(t *testing.T) {
	if got := terminalRows("a\nbb\n", 0); got != 2 {
		t.Errorf("unknown width: %d", got)
	}
	if got := terminalRows(strings.Repeat("x", 81)+"\nshort\n", 80); got != 3 {
		t.Errorf("wrapped: %d", got)
	}
}

// TestPrintAccountEscapesControlCharacters: an account stored before the
// store refused control characters shows them escaped, so a CR LF or an
// escape sequence in its name, host or username cannot rewrite the
// operator's terminal.
func TestPrintAccountEscapesControlCharacters(t *testing.T) {
	var out bytes.Buffer
	a := &app{io: IO{Out: &out}}
	a.printAccount(&mailbusv1.Account{
		Id: "3", Name: "a\x1b[2Jb", Protocol: mailbusv1.Protocol_PROTOCOL_POP3, Host: "pop.example.com\r\nx", Port: 995,
		Security: mailbusv1.Security_SECURITY_TLS, Username: "victim\r\nDELE 1\u009b",
	})
	got := out.String()
	for _, want := range []string{`Account a\x1b[2Jb (id 3)`, `pop.example.com\x0d\x0ax:995`, `username:   victim\x0d\x0aDELE 1\x9b`} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.ContainsAny(got, "\x1b\r\u009b") {
		t.Errorf("output has a raw control character: %q", got)
	}
}
