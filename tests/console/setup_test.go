package console

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/mailbus/demo"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// waitLong bounds every wait: the initial sync, a browser step, a
// write-back reaching the IMAP server.
const waitLong = 60 * time.Second

// world is mailbus demo's setup, in the test's process.
type world struct {
	imap       *demo.IMAPServer
	pop        *demo.POP3Server
	info       mailbus.Info
	adminToken string
	accounts   mailbusv1.AccountServiceClient
	mailboxes  mailbusv1.MailboxServiceClient
	tokens     mailbusv1.TokenServiceClient
	imapAcct   *mailbusv1.Account
	popAcct    *mailbusv1.Account
}

// startWorld runs the demo servers and mailbus with both demo accounts,
// synced, until the test ends.
func startWorld(t *testing.T) *world {
	t.Helper()
	w := &world{}
	var err error
	if w.imap, err = demo.StartIMAP("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.imap.Close() })
	if w.pop, err = demo.StartPOP3("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.pop.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan mailbus.Info, 1)
	srv, err := mailbus.New(mailbus.Config{DataDir: filepath.Join(t.TempDir(), "data"), Listener: ln, MetricsListen: "-", Ready: func(i mailbus.Info) { ready <- i }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("mailbus: %v", err)
		}
	})
	select {
	case w.info = <-ready:
	case err := <-done:
		done <- nil // for the cleanup
		t.Fatalf("mailbus stopped before it served: %v", err)
	case <-time.After(waitLong):
		t.Fatal("mailbus did not start")
	}
	if w.adminToken, err = apitoken.ReadFile(w.info.AdminTokenFile); err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(w.info.StoreAddr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(w.adminToken))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	w.accounts = mailbusv1.NewAccountServiceClient(conn)
	w.mailboxes = mailbusv1.NewMailboxServiceClient(conn)
	w.tokens = mailbusv1.NewTokenServiceClient(conn)
	w.imapAcct = w.addAccount(t, &mailbusv1.Account{
		Name: "demo-imap", Protocol: mailbusv1.Protocol_PROTOCOL_IMAP,
		Host: "127.0.0.1", Port: uint32(w.imap.Addr().Port), Security: mailbusv1.Security_SECURITY_NONE,
		Username: demo.IMAPUser, Secret: demo.IMAPPassword, AuthMethod: mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD,
		PollInterval: durationpb.New(15 * time.Second),
	})
	w.popAcct = w.addAccount(t, &mailbusv1.Account{
		Name: "demo-pop3", Protocol: mailbusv1.Protocol_PROTOCOL_POP3,
		Host: "127.0.0.1", Port: uint32(w.pop.Addr().Port), Security: mailbusv1.Security_SECURITY_NONE,
		Username: demo.POP3User, Secret: demo.POP3Password, AuthMethod: mailbusv1.AuthMethod_AUTH_METHOD_PASSWORD,
		Pop3Mode: mailbusv1.Pop3Mode_POP3_MODE_KEEP, PollInterval: durationpb.New(15 * time.Second),
	})
	for _, a := range []*mailbusv1.Account{w.imapAcct, w.popAcct} {
		eventually(t, "account "+a.Name+" synced", func() error {
			got, err := w.accounts.GetAccount(ctxFor(t), &mailbusv1.GetAccountRequest{AccountId: a.Id})
			if err != nil {
				return err
			}
			if st := got.Account.GetStatus(); st.GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || st.GetLastSuccessTime() == nil {
				return fmt.Errorf("state %v %s", st.GetState(), st.GetReason())
			}
			return nil
		})
	}
	return w
}

func (w *world) addAccount(t *testing.T, a *mailbusv1.Account) *mailbusv1.Account {
	t.Helper()
	resp, err := w.accounts.CreateAccount(ctxFor(t), &mailbusv1.CreateAccountRequest{Account: a})
	if err != nil {
		t.Fatalf("add account %s: %v", a.Name, err)
	}
	return resp.Account
}

// consoleURL is the web console's address.
func (w *world) consoleURL() string { return w.info.ConsoleURL }

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	return ctx
}

// eventually retries f until it succeeds or waitLong has passed.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// chromiumPath is the browser to drive; outside CI the test skips when
// there is none, saying what to install.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const install = "no Chromium for the web console's browser tests: apt-get install chromium"
	if os.Getenv("CI") == "true" {
		t.Fatal(install)
	}
	t.Skip(install)
	return ""
}

// newBrowser starts headless Chromium for the test and returns a context
// of one tab in it.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1400, 900),
	)
	if os.Geteuid() == 0 {
		// Chromium refuses to run as root with its sandbox (CI runs as
		// root); the page's own sandboxing (iframe sandbox, CSP) is what
		// the tests check, and it does not depend on this one.
		opts = append(opts, chromedp.NoSandbox)
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(allocCtx, chromedp.WithErrorf(t.Logf))
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// artifactsDir is where screenshots go: $MAILBUS_TEST_ARTIFACTS/console,
// else a directory under the system's temporary directory (kept).
func artifactsDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("MAILBUS_TEST_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "mailbus-test-artifacts")
	}
	dir := filepath.Join(base, "console")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves the tab as name.png in the artifacts directory.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(artifactsDir(t), name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// step runs browser actions within waitLong, failing the test with what
// they were for.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs a browser action that returns a value, within waitLong.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, waitLong)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + "'"
}

// jsArray is a JavaScript array of the strings.
func jsArray(ss []string) string {
	quoted := make([]string, len(ss))
	for i, s := range ss {
		quoted[i] = jsString(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}
