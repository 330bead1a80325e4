package cli

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// TestNATSUserCreate: the command resolves the account through the store,
// adds the user to the data directory's file with only a bcrypt hash of
// the password it prints once, and prints the configuration for an
// external server; --service prints a service's user.
func TestNATSUserCreate(t *testing.T) {
	data := filepath.Join(t.TempDir(), "serve")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan mailbus.Info, 1)
	srv, err := mailbus.New(mailbus.Config{DataDir: data, Listener: ln, MetricsListen: "-", Ready: func(i mailbus.Info) { ready <- i }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	info := <-ready
	env := map[string]string{"MAILBUS_SERVER": info.StoreAddr, "MAILBUS_DATA": data, "PW": "x", "MAILBUS_TOKEN_FILE": info.AdminTokenFile}
	if code, _, errOut := run(t, env, "account", "add", "--name", "work", "--protocol", "pop3", "--host", "127.0.0.1", "--port", "1",
		"--security", "none", "--username", "u", "--password-env", "PW"); code != ExitOK {
		t.Fatalf("account add: %s", errOut)
	}

	code, out, errOut := run(t, env, "nats-user", "create", "--account", "work", "--user", "crm")
	if code != ExitOK {
		t.Fatalf("nats-user create: exit %d: %s", code, errOut)
	}
	pw := regexp.MustCompile(`password:\s+(\S+)`).FindStringSubmatch(out)
	if pw == nil {
		t.Fatalf("no password in:\n%s", out)
	}
	for _, want := range []string{"user:        crm", "filter mailbus.events.1.>", "CONSUMER_crm", `"$JS.API.CONSUMER.MSG.NEXT.MAILBUS_EVENTS.crm"`, "nats consumer add MAILBUS_EVENTS crm"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	file, err := os.ReadFile(filepath.Join(data, mailbus.NATSUsersFileName))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(file), pw[1]) || !strings.Contains(string(file), `"$2a$`) {
		t.Fatalf("the users file holds the password, or no bcrypt hash:\n%s", file)
	}
	users, err := mailbus.LoadNATSUsers(data)
	if err != nil || len(users) != 1 || users[0].User != "crm" || users[0].AccountID != "1" {
		t.Fatalf("users %+v, %v", users, err)
	}
	if code, _, errOut := run(t, env, "nats-user", "create", "--account", "work", "--user", "crm"); code != ExitError || !strings.Contains(errOut, "exists") {
		t.Fatalf("a second crm: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run(t, env, "nats-user", "create", "--account", "nope"); code != ExitError || !strings.Contains(errOut, `no account "nope"`) {
		t.Fatalf("unknown account: exit %d: %s", code, errOut)
	}

	// --all-accounts needs no account; list shows both users; remove
	// takes one out of the file.
	code, out, errOut = run(t, env, "nats-user", "create", "--all-accounts", "--user", "backend")
	if code != ExitOK || !strings.Contains(out, "events of all accounts") || !strings.Contains(out, "filter mailbus.events.>") ||
		!strings.Contains(out, "The running mailbus serve has applied it") || !strings.Contains(out, "--translate 'mailbus events decode' 'mailbus.events.>'") {
		t.Fatalf("create --all-accounts: exit %d: %s%s", code, out, errOut)
	}
	code, out, errOut = run(t, env, "nats-user", "list")
	if code != ExitOK || !regexp.MustCompile(`(?m)^crm\s+account 1\s+mailbus\.events\.1\.>$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^backend\s+all accounts\s+mailbus\.events\.>$`).MatchString(out) {
		t.Fatalf("list: exit %d: %s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, env, "nats-user", "remove", "crm"); code != ExitOK || !strings.Contains(out, "Removed NATS user crm") || !strings.Contains(out, "has applied it") {
		t.Fatalf("remove: exit %d: %s%s", code, out, errOut)
	}
	if users, err := mailbus.LoadNATSUsers(data); err != nil || len(users) != 1 || users[0].User != "backend" || !users[0].AllAccounts {
		t.Fatalf("after remove: %+v, %v", users, err)
	}
	if code, _, errOut := run(t, env, "nats-user", "remove", "crm"); code != ExitError || !strings.Contains(errOut, "no such NATS user") {
		t.Fatalf("remove twice: exit %d: %s", code, errOut)
	}

	code, out, errOut = run(t, env, "nats-user", "create", "--service", "imapsync")
	if code != ExitOK || !strings.Contains(out, `"$KV.MAILBUS_LEASES_IMAPSYNC.>"`) || !strings.Contains(out, `{user: "imapsync"`) {
		t.Fatalf("--service imapsync: exit %d: %s%s", code, out, errOut)
	}
	// Without --data, from a directory that is not mailbus serve's: a
	// usage error, and no ./mailbus-data made (issue 16).
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	noData := map[string]string{"MAILBUS_SERVER": info.StoreAddr, "MAILBUS_TOKEN_FILE": info.AdminTokenFile}
	if code, _, errOut := run(t, noData, "nats-user", "create", "--account", "work"); code != ExitUsage ||
		!strings.Contains(errOut, "no data directory ./mailbus-data") || !strings.Contains(errOut, "give --data") {
		t.Errorf("without --data: exit %d, want %d naming the missing directory: %s", code, ExitUsage, errOut)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, mailbus.DefaultDataDir)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("without --data: %s was made (%v)", mailbus.DefaultDataDir, err)
	}
	// A directory that is not serve's (no embedded NATS in it) is refused,
	// and nothing is written there.
	if code, _, errOut := run(t, noData, "nats-user", "create", "--all-accounts", "--data", elsewhere); code != ExitUsage ||
		!strings.Contains(errOut, "not the data directory of a mailbus serve") {
		t.Errorf("--data of another directory: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(elsewhere, mailbus.NATSUsersFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("--data of another directory: the users file was written (%v)", err)
	}
	for _, args := range [][]string{
		{"nats-user", "create", "--all-accounts", "--account", "work"},
		{"nats-user", "remove"},
		{"nats-user", "create"},
		{"nats-user", "create", "--service", "admin"},
		{"nats-user", "create", "--service", "store", "--account", "work"},
	} {
		if code, _, _ := run(t, env, args...); code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, ExitUsage)
		}
	}
}
