package cli

import (
	"net"
	"strings"
	"testing"
	"time"
)

// commands are every command path of mailbus.
var commands = [][]string{
	{}, {"account"}, {"account", "add"}, {"account", "list"}, {"account", "show"}, {"account", "update"}, {"account", "remove"},
	{"status"}, {"mailbox"}, {"mailbox", "list"}, {"mailbox", "create"}, {"mailbox", "rename"}, {"mailbox", "delete"},
	{"message"}, {"message", "list"}, {"message", "show"}, {"message", "raw"}, {"message", "attachment"}, {"message", "move"}, {"message", "delete"},
	{"flag"}, {"flag", "add"}, {"flag", "remove"}, {"changes"}, {"watch"}, {"version"}, {"serve"}, {"demo"},
	{"webhook"}, {"webhook", "add"}, {"webhook", "list"}, {"webhook", "remove"}, {"webhook", "test"}, {"webhook", "deliveries"}, {"webhook", "redeliver"},
	{"completion"}, {"completion", "bash"}, {"completion", "zsh"}, {"completion", "fish"},
}

// TestHelpEverywhere: --help on every command succeeds and shows examples.
func TestHelpEverywhere(t *testing.T) {
	c := &cli{t: t, bin: mailbusBin(t), server: freeAddr(t)}
	for _, cmd := range commands {
		r := c.run(append(cmd, "--help")...)
		if r.code != 0 || !strings.Contains(r.stdout, "Usage:") {
			t.Errorf("%s", r)
			continue
		}
		if len(cmd) > 0 && cmd[0] == "completion" && len(cmd) == 2 {
			continue // cobra's own help texts
		}
		if !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("mailbus %s --help has no examples:\n%s", strings.Join(cmd, " "), r.stdout)
		}
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if r := c.run("completion", shell); r.code != 0 || !strings.Contains(r.stdout, "mailbus") {
			t.Errorf("%s", r)
		}
	}
	if r := c.run("version"); r.code != 0 || !strings.HasPrefix(r.stdout, "mailbus ") {
		t.Errorf("%s", r)
	}
}

// TestBadInput: every command with a missing or wrong argument or flag
// exits 2 with a usage message, without needing a store (the server
// address is closed).
func TestBadInput(t *testing.T) {
	c := &cli{t: t, bin: mailbusBin(t), server: freeAddr(t)}
	c.env = append(c.env, "PW=secret")
	add := []string{"account", "add", "--name", "n", "--protocol", "imap", "--host", "h", "--username", "u", "--password-env", "PW"}
	with := func(base []string, more ...string) []string { return append(append([]string(nil), base...), more...) }
	cases := []struct {
		args []string
		want string // in the error message
	}{
		{nil, "missing command"},
		{[]string{"nosuch"}, `unknown command "nosuch"`},
		{[]string{"--no-such-flag", "status"}, "unknown flag"},
		{[]string{"--timeout", "soon", "status"}, "invalid argument"},
		{[]string{"account"}, "missing command"},
		{[]string{"account", "frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"account", "add"}, "missing --name"},
		{[]string{"account", "add", "--name", "n", "--protocol", "imap", "--host", "h"}, "missing --username"},
		{with(add, "--protocol", "smtp"), `--protocol "smtp": want imap or pop3`},
		{with(add, "--security", "maybe"), `--security "maybe": want tls, starttls or none`},
		{with(add, "--port", "70000"), "--port 70000: want 1 to 65535"},
		{with(add, "--port", "http"), "invalid argument"},
		{with(add, "--pop3-mode", "delete"), "--pop3-mode is for POP3 accounts only"},
		{with(add, "--protocol", "pop3", "--pop3-mode", "shred"), `--pop3-mode "shred": want keep or delete`},
		{with(add, "--poll", "10ms"), "--poll 10ms: want at least 1s"},
		{with(add, "--poll", "often"), "invalid argument"},
		{with(add, "--password-env", "MAILBUS_TEST_UNSET_VARIABLE"), "not set or empty"},
		{with(add, "--password-env", "", "--password-file", "/nonexistent/pw"), "--password-file"},
		{with(add, "--password-file", "/nonexistent/pw"), "not both"},
		{with(add, "extra"), `unexpected argument "extra"`},
		{[]string{"account", "add", "--name", "n", "--protocol", "imap", "--host", "h", "--username", "u"}, "no password"},
		{[]string{"account", "list", "extra"}, "unexpected argument"},
		{[]string{"account", "show"}, "missing account name or id"},
		{[]string{"account", "show", "a", "b"}, `unexpected argument "b"`},
		{[]string{"account", "remove"}, "missing account name or id"},
		{[]string{"account", "update"}, "missing account name or id"},
		{[]string{"account", "update", "work"}, "nothing to change"},
		{[]string{"account", "update", "work", "--security", "maybe"}, `--security "maybe"`},
		{[]string{"account", "update", "work", "--port", "0"}, "--port 0"},
		{[]string{"account", "update", "work", "--protocol", "pop3"}, "unknown flag: --protocol"},
		{[]string{"status", "extra"}, "unexpected argument"},
		{[]string{"status", "--watch=maybe"}, "invalid argument"},
		{[]string{"mailbox"}, "missing command"},
		{[]string{"mailbox", "list"}, "missing --account"},
		{[]string{"mailbox", "list", "--account"}, "flag needs an argument"},
		{[]string{"mailbox", "create", "--account", "a"}, "missing mailbox name"},
		{[]string{"mailbox", "create", "Projects"}, "missing --account"},
		{[]string{"mailbox", "rename", "--account", "a", "Old"}, "missing mailbox and new name"},
		{[]string{"mailbox", "delete", "--account", "a"}, "missing mailbox name or id"},
		{[]string{"message"}, "missing command"},
		{[]string{"message", "list"}, "missing --account"},
		{[]string{"message", "list", "--account", "a", "--limit", "-1"}, "--limit -1"},
		{[]string{"message", "list", "--account", "a", "--limit", "many"}, "invalid argument"},
		{[]string{"message", "show"}, "missing message id"},
		{[]string{"message", "show", "abc"}, `message id "abc": want a number`},
		{[]string{"message", "raw"}, "missing message id"},
		{[]string{"message", "raw", "1", "2"}, "unexpected argument"},
		{[]string{"message", "attachment", "1"}, "missing message id and part"},
		{[]string{"message", "attachment", "x", "2"}, `message id "x"`},
		{[]string{"message", "move", "1"}, "missing --to"},
		{[]string{"message", "move", "--to", "Archive"}, "missing message id"},
		{[]string{"message", "move", "x1", "--to", "Archive"}, `message id "x1"`},
		{[]string{"message", "delete"}, "missing message id"},
		{[]string{"message", "delete", "one"}, `message id "one"`},
		{[]string{"flag"}, "missing command"},
		{[]string{"flag", "add", "--account", "a", "1"}, "missing flag"},
		{[]string{"flag", "add", "--account", "a", "seen"}, "missing message id"},
		{[]string{"flag", "add", "1", "seen"}, "missing --account"},
		{[]string{"flag", "add", "--account", "a", "1", "bad(flag"}, `flag "bad(flag"`},
		{[]string{"flag", "remove"}, "missing message id"},
		{[]string{"changes", "--account", "a"}, "missing --since"},
		{[]string{"changes", "--since", "0"}, "missing --account"},
		{[]string{"changes", "--account", "a", "--since", "-1"}, "invalid argument"},
		{[]string{"watch", "--since", "3"}, "--since needs --account"},
		{[]string{"watch", "extra"}, "unexpected argument"},
		{[]string{"version", "extra"}, "unexpected argument"},
		{[]string{"completion"}, "name the shell"},
		{[]string{"completion", "tcsh"}, `unknown shell "tcsh"`},
		{[]string{"serve", "extra"}, "unexpected argument"},
		{[]string{"serve", "--log-level", "loud"}, "log level"},
		{[]string{"serve", "--nats", "nats://127.0.0.1:4222", "--nats-listen", "127.0.0.1:4222"}, "--nats-listen is for the embedded"},
		{[]string{"serve", "--database-url", "mysql://db"}, "want postgres://"},
		{[]string{"serve", "--change-log-retention", "0s"}, "--change-log-retention 0s"},
		{[]string{"serve", "--max-message-size", "12"}, "--max-message-size 12"},
		{[]string{"demo", "extra"}, "unexpected argument"},
		{[]string{"demo", "--imap-listen"}, "flag needs an argument"},
		{[]string{"demo", "--new-mail-every", "-1s"}, "--new-mail-every -1s"},
	}
	for _, tc := range cases {
		r := c.run(tc.args...)
		if r.code != 2 {
			t.Errorf("want exit 2: %s", r)
			continue
		}
		if !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "Usage: mailbus") || !strings.Contains(r.stderr, "--help") {
			t.Errorf("want %q and a usage line in stderr: %s", tc.want, r)
		}
		if strings.Contains(r.stderr, "cannot reach") {
			t.Errorf("a usage error contacted the store: %s", r)
		}
	}
}

// TestStoreSilent: a server that takes the connection but never answers
// (a hung store, a wrong port) is reported within seconds, not after
// gRPC's 20 s connect timeout or never.
func TestStoreSilent(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // never accepts
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c := &cli{t: t, bin: mailbusBin(t), server: ln.Addr().String()}
	for _, args := range [][]string{{"account", "list"}, {"watch", "--account", "work"}, {"status", "--watch"}} {
		start := time.Now()
		r := c.run(args...)
		took := time.Since(start)
		if r.code != 1 || !strings.Contains(r.stderr, "cannot reach the mailbus store at "+c.server+" (no gRPC answer within") {
			t.Errorf("want exit 1 saying the store does not answer: %s", r)
		}
		if took > 15*time.Second {
			t.Errorf("mailbus %v took %s to report a silent store", args, took)
		}
	}
}

// TestStoreDown: every command that needs the store exits 1 promptly,
// saying it cannot reach the store and how to start one.
func TestStoreDown(t *testing.T) {
	c := &cli{t: t, bin: mailbusBin(t), server: freeAddr(t)} // nothing listens there
	c.env = append(c.env, "PW=secret")
	cases := [][]string{
		{"account", "add", "--name", "n", "--protocol", "imap", "--host", "h", "--username", "u", "--password-env", "PW"},
		{"account", "list"}, {"account", "show", "work"}, {"account", "update", "work", "--host", "h"}, {"account", "remove", "work"},
		{"status"}, {"status", "--watch"}, {"status", "--json"},
		{"mailbox", "list", "--account", "work"}, {"mailbox", "create", "--account", "work", "P"},
		{"mailbox", "rename", "--account", "work", "P", "Q"}, {"mailbox", "delete", "--account", "work", "P"},
		{"message", "list", "--account", "work"}, {"message", "show", "1"}, {"message", "raw", "1"}, {"message", "attachment", "1", "2"},
		{"message", "move", "1", "--to", "Archive"}, {"message", "delete", "1"},
		{"flag", "add", "--account", "work", "1", "seen"}, {"flag", "remove", "--account", "work", "1", "seen"},
		{"changes", "--account", "work", "--since", "0"}, {"watch"}, {"watch", "--account", "work", "--json"},
	}
	for _, args := range cases {
		start := time.Now()
		r := c.run(args...)
		took := time.Since(start)
		if r.code != 1 {
			t.Errorf("want exit 1: %s", r)
			continue
		}
		if !strings.Contains(r.stderr, "cannot reach the mailbus store at "+c.server) || !strings.Contains(r.stderr, "mailbus serve") || !strings.Contains(r.stderr, "--server") {
			t.Errorf("the message does not say what happened and what to do: %s", r)
		}
		// Generous: a refused connection is reported at once; this only
		// catches waiting for gRPC's 20 s connect timeout or a hang.
		if took > 15*time.Second {
			t.Errorf("mailbus %v took %s to report an unreachable store", args, took)
		}
	}
}
