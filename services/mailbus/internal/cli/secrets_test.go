package cli

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// fakePOP3 is a POP3 server that records the passwords it is sent and
// refuses every login.
type fakePOP3 struct {
	ln        net.Listener
	passwords chan string
}

func startFakePOP3(t *testing.T) *fakePOP3 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakePOP3{ln: ln, passwords: make(chan string, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go f.serve(c)
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return f
}

func (f *fakePOP3) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	fmt.Fprint(c, "+OK fake POP3\r\n")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd, arg, _ := strings.Cut(strings.TrimRight(line, "\r\n"), " ")
		switch strings.ToUpper(cmd) {
		case "CAPA":
			fmt.Fprint(c, "+OK\r\nUSER\r\nUIDL\r\n.\r\n")
		case "USER":
			fmt.Fprint(c, "+OK\r\n")
		case "PASS":
			select {
			case f.passwords <- arg:
			default:
			}
			fmt.Fprint(c, "-ERR [AUTH] invalid\r\n")
		case "QUIT":
			fmt.Fprint(c, "+OK\r\n")
			return
		default:
			fmt.Fprint(c, "-ERR unknown command\r\n")
		}
	}
}

func (f *fakePOP3) port() string { return strconv.Itoa(f.ln.Addr().(*net.TCPAddr).Port) }

// TestHostChangeDoesNotLeakPassword is the exploit of issue 16: an admin
// pointed an account at a server of their own (`account update --host
// --port`), and the fetcher sent it the stored password. Now the CLI asks
// for the password again, an update through the API without one clears
// it and parks the account, and the first password the new server gets is
// the one given for it.
func TestHostChangeDoesNotLeakPassword(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	addr, _, stop := serveFor(t, data, "", "")
	defer stop()
	fake := startFakePOP3(t)
	pwFile := filepath.Join(t.TempDir(), "new-pw")
	if err := os.WriteFile(pwFile, []byte("the-new-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MAILBUS_SERVER": addr, "PW": "the-old-password", "MAILBUS_TOKEN_FILE": filepath.Join(data, "admin.token")}
	if code, _, errOut := run(t, env, "account", "add", "--name", "work", "--protocol", "pop3", "--host", "127.0.0.1", "--port", "1",
		"--security", "none", "--username", "u", "--password-env", "PW", "--poll", "1s"); code != ExitOK {
		t.Fatalf("account add: %s", errOut)
	}

	// The CLI: a new port without a password (standard input gives none)
	// is refused, saying why.
	code, _, errOut := run(t, env, "account", "update", "work", "--port", fake.port())
	if code == ExitOK || !strings.Contains(errOut, "clears the stored password") {
		t.Errorf("account update --port without a password: exit %d, %q; want a refusal saying the password is needed", code, errOut)
	}

	// The API, as a script with the admin token would call it.
	admin, err := apitoken.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(admin))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	accounts := mailbusv1.NewAccountServiceClient(conn)
	got, err := accounts.GetAccount(ctx, &mailbusv1.GetAccountRequest{Name: "work"})
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(fake.port())
	upd, err := accounts.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{
		Account:    &mailbusv1.Account{Id: got.Account.Id, Port: uint32(port)},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"port"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if st := upd.Account.GetStatus(); st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), "password was cleared") {
		t.Errorf("status after a port change through the API: %v, want parked because the password was cleared", st)
		// Without the fix the fetcher logs in to the new server with the
		// stored password: show it.
		select {
		case pw := <-fake.passwords:
			t.Fatalf("the new server got the stored password %q", pw)
		case <-ctx.Done():
			t.Fatal("the account is not parked, and the fetcher never logged in to the new server")
		}
	}

	// The password given for the new server is the first it gets.
	if code, out, errOut := run(t, env, "account", "update", "work", "--password-file", pwFile); code != ExitOK {
		t.Fatalf("account update --password-file: %d %s%s", code, out, errOut)
	}
	select {
	case pw := <-fake.passwords:
		if pw != "the-new-password" {
			t.Fatalf("the new server got the password %q, want only the one given for it", pw)
		}
	case <-ctx.Done():
		t.Fatal("the fetcher never logged in to the new server")
	}
}

// TestAccountUpdateAsksPasswordOnHostChange: the CLI sends the password
// with an update that moves the account; an update that does not move it
// needs none.
func TestAccountUpdateAsksPasswordOnHostChange(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	addr, svc, stop := serveFor(t, data, "", "")
	defer stop()
	env := map[string]string{"MAILBUS_SERVER": addr, "PW": "old-pw", "PW2": "new-pw", "MAILBUS_TOKEN_FILE": filepath.Join(data, "admin.token")}
	if code, _, errOut := run(t, env, "account", "add", "--name", "work", "--protocol", "pop3", "--host", "127.0.0.1", "--port", "1",
		"--security", "none", "--username", "u", "--password-env", "PW"); code != ExitOK {
		t.Fatalf("account add: %s", errOut)
	}
	if code, _, errOut := run(t, env, "account", "update", "work", "--username", "v", "--port", "1", "--host", "127.0.0.1"); code != ExitOK {
		t.Fatalf("account update of the username (same host and port): %s", errOut)
	}
	if pw, err := accountSecret(t, addr, svc, "1"); err != nil || pw != "old-pw" {
		t.Fatalf("secret after an update that does not move the account: %q %v", pw, err)
	}
	if code, _, errOut := run(t, env, "account", "update", "work", "--host", "localhost", "--password-env", "PW2"); code != ExitOK {
		t.Fatalf("account update --host with --password-env: %s", errOut)
	}
	if pw, err := accountSecret(t, addr, svc, "1"); err != nil || pw != "new-pw" {
		t.Fatalf("secret after a host change with a new password: %q %v", pw, err)
	}
}

// TestTokenCommands: `token create` refuses service tokens and takes
// --expires, `token list` shows the expiry, and `token rotate-admin`
// replaces serve's admin token file, the old token revoked.
func TestTokenCommands(t *testing.T) {
	data := filepath.Join(t.TempDir(), "data")
	addr, _, stop := serveFor(t, data, "", "")
	defer stop()
	tokenFile := filepath.Join(data, "admin.token")
	env := map[string]string{"MAILBUS_SERVER": addr, "MAILBUS_DATA": data}

	if code, _, errOut := run(t, env, "token", "create", "--name", "fetcher", "--role", "service"); code != ExitUsage || !strings.Contains(errOut, "--service-token-file") {
		t.Fatalf("token create --role service: exit %d %q, want a usage error naming --service-token-file", code, errOut)
	}
	for _, bad := range []string{"0d", "-1h", "soon", "1.5d"} {
		if code, _, errOut := run(t, env, "token", "create", "--name", "x", "--role", "admin", "--expires", bad); code != ExitUsage || !strings.Contains(errOut, "--expires") {
			t.Errorf("--expires %s: exit %d %q, want a usage error", bad, code, errOut)
		}
	}
	code, out, errOut := run(t, env, "token", "create", "--name", "laptop", "--role", "admin", "--expires", "30d")
	if code != ExitOK {
		t.Fatalf("token create --expires 30d: %d %s", code, errOut)
	}
	laptop := strings.TrimSpace(out)
	code, out, errOut = run(t, env, "token", "list")
	if code != ExitOK {
		t.Fatalf("token list: %s", errOut)
	}
	wantDay := time.Now().Add(30 * 24 * time.Hour).Format("2006-01-02")
	if !strings.Contains(out, "EXPIRES") || !strings.Contains(out, wantDay) || !strings.Contains(out, "never") {
		t.Errorf("token list does not show the expiry %s (and never for the admin token):\n%s", wantDay, out)
	}

	old, err := apitoken.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	oldID, _ := apitoken.ID(old)
	code, out, errOut = run(t, env, "token", "rotate-admin")
	if code != ExitOK || !strings.Contains(out, oldID) {
		t.Fatalf("token rotate-admin: %d %s%s", code, out, errOut)
	}
	rotated, err := apitoken.ReadFile(tokenFile)
	if err != nil {
		t.Fatalf("the new admin token file: %v", err)
	}
	if rotated == old {
		t.Fatal("admin.token was not replaced")
	}
	if fi, err := os.Stat(tokenFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("admin.token mode: %v %v, want 0600", fi.Mode(), err)
	}
	if code, _, errOut := run(t, map[string]string{"MAILBUS_SERVER": addr, "MAILBUS_TOKEN": old}, "account", "list"); code == ExitOK || !strings.Contains(errOut, "revoked") {
		t.Errorf("the old admin token after the rotation: exit %d %q, want refused", code, errOut)
	}
	code, out, errOut = run(t, env, "token", "list", "--all")
	if code != ExitOK {
		t.Fatalf("token list with the new admin token: %s", errOut)
	}
	if !strings.Contains(out, oldID) {
		t.Errorf("token list --all does not show the old admin token %s:\n%s", oldID, out)
	}
	// The device's token made before is untouched.
	if code, _, errOut := run(t, map[string]string{"MAILBUS_SERVER": addr, "MAILBUS_TOKEN": laptop}, "account", "list"); code != ExitOK {
		t.Errorf("the laptop token after the rotation: %s", errOut)
	}
}
