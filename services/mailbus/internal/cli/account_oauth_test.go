package cli

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/mailbus/mailbus/pkg/apitoken"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/oauthflow"
	"github.com/mailbus/mailbus/pkg/oauthtest/oidcserver"
)

// oauthWait bounds waiting for a flow or the store; nothing is timed.
const oauthWait = 2 * time.Minute

// liveCLI is a mailbus command running in the background, whose standard
// error is read line by line as the user would read the prompts.
type liveCLI struct {
	lines chan string
	done  chan int
	mu    sync.Mutex
	out   bytes.Buffer
	err   bytes.Buffer
}

type lockedBuffer struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func startCLI(t *testing.T, env map[string]string, args ...string) *liveCLI {
	t.Helper()
	return startCLIContext(context.Background(), t, env, args...)
}

func startCLIContext(ctx context.Context, t *testing.T, env map[string]string, args ...string) *liveCLI {
	t.Helper()
	l := &liveCLI{lines: make(chan string, 100), done: make(chan int, 1)}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			l.mu.Lock()
			l.err.WriteString(sc.Text() + "\n")
			l.mu.Unlock()
			select {
			case l.lines <- sc.Text():
			default:
			}
		}
		close(l.lines)
	}()
	go func() {
		code := Main(ctx, args, IO{In: strings.NewReader(""), Out: lockedBuffer{&l.mu, &l.out}, Err: pw,
			Getenv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
		pw.Close()
		l.done <- code
	}()
	return l
}

// line waits for a line of standard error that contains substr; "" when
// the command ended first.
func (l *liveCLI) line(t *testing.T, substr string) string {
	t.Helper()
	timeout := time.After(oauthWait)
	for {
		select {
		case s, ok := <-l.lines:
			if !ok {
				return ""
			}
			if strings.Contains(s, substr) {
				return strings.TrimSpace(s)
			}
		case <-timeout:
			t.Fatalf("no line with %q in time", substr)
		}
	}
}

func (l *liveCLI) wait(t *testing.T) (int, string, string) {
	t.Helper()
	select {
	case code := <-l.done:
		for range l.lines {
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		return code, l.out.String(), l.err.String()
	case <-time.After(oauthWait):
		t.Fatal("the command did not end in time")
	}
	return 0, "", ""
}

// oauthEnv is a store (serve, SQLite) and an authorization server.
type oauthEnv struct {
	addr, svc  string
	env        map[string]string
	srv        *oidcserver.Server
	secretFile string
	accounts   mailbusv1.AccountServiceClient
	ingest     mailbusv1.IngestServiceClient
}

func newOAuthEnv(t *testing.T, o oidcserver.Options) *oauthEnv {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	addr, svc, stop := serveFor(t, data, "", "")
	t.Cleanup(stop)
	e := &oauthEnv{addr: addr, svc: svc, srv: oidcserver.Start(t, o),
		env: map[string]string{"MAILBUS_SERVER": addr, "MAILBUS_TOKEN_FILE": filepath.Join(data, "admin.token")}}
	if e.srv.ClientSecret != "" {
		e.secretFile = writeFile(t, "client-secret", e.srv.ClientSecret+"\n")
	}
	admin, err := apitoken.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	dial := func(token string) *grpc.ClientConn {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), apitoken.DialOption(token))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	e.accounts = mailbusv1.NewAccountServiceClient(dial(admin))
	e.ingest = mailbusv1.NewIngestServiceClient(dial(svc))
	return e
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// generic are the flags of an account at the test server (a generic
// provider; the mail server is never reached: port 1).
func (e *oauthEnv) generic(name string, extra ...string) []string {
	args := []string{"account", "add", "--name", name, "--email", e.srv.User.Email, "--host", "127.0.0.1", "--port", "1", "--security", "none",
		"--oauth", "generic", "--client-id", e.srv.ClientID, "--token-url", e.srv.TokenURL, "--scope", "offline_access", "--scope", "mail"}
	if e.secretFile != "" {
		args = append(args, "--client-secret-file", e.secretFile)
	}
	return append(args, extra...)
}

// browse acts as the user's browser: it opens the URL the command
// printed, logs in, allows, and follows the redirect to the command's
// loopback listener; it returns the listener's address.
func (e *oauthEnv) browse(t *testing.T, l *liveCLI) string {
	t.Helper()
	authURL := l.line(t, e.srv.AuthURL)
	if authURL == "" {
		_, _, errOut := l.wait(t)
		t.Fatalf("the command printed no authorization URL:\n%s", errOut)
	}
	loc, err := e.srv.Authorize(context.Background(), authURL)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	resp, err := http.Get(loc.String())
	if err != nil {
		t.Fatalf("redirect to the command's listener: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the command's listener answered HTTP %d", resp.StatusCode)
	}
	return loc.Host
}

// noSecrets fails when an output shows the client secret or a refresh
// token (the test server's start with "rt-").
func (e *oauthEnv) noSecrets(t *testing.T, outs ...string) {
	t.Helper()
	for _, s := range outs {
		if (e.srv.ClientSecret != "" && strings.Contains(s, e.srv.ClientSecret)) || strings.Contains(s, "rt-") {
			t.Errorf("output shows the client secret or a refresh token:\n%s", s)
		}
	}
}

func (e *oauthEnv) account(t *testing.T, name string) *mailbusv1.Account {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), oauthWait)
	defer cancel()
	r, err := e.accounts.GetAccount(ctx, &mailbusv1.GetAccountRequest{Name: name})
	if err != nil {
		t.Fatalf("get account %s: %v", name, err)
	}
	return r.Account
}

// tokenWorks: the store obtains an access token for the account from the
// authorization server (as a fetcher asks before a login), and that
// server's introspection endpoint (what a mail server asks) finds it
// active for the user. With renew, the store is made to renew it first
// (a rotating refresh).
func (e *oauthEnv) tokenWorks(t *testing.T, id string, renew bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), oauthWait)
	defer cancel()
	r, err := e.ingest.GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: id, Refresh: renew})
	if err != nil {
		t.Fatalf("GetAccountSecret: %v", err)
	}
	in, err := e.srv.Introspect(ctx, r.Secret)
	if err != nil || !in.Active || in.Username != e.srv.User.Email {
		t.Fatalf("the store's access token at the introspection endpoint: %+v %v", in, err)
	}
}

func closed(t *testing.T, hostport string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", hostport, 10*time.Second); err == nil {
		c.Close()
		t.Errorf("the loopback listener %s still accepts connections after the command", hostport)
	}
}

// TestOAuthAddBrowser: account add --oauth runs the authorization code
// flow with the test as the browser; the account gets the refresh token
// (the store then obtains working access tokens, also after a rotating
// refresh), the listener is closed, and nothing printed shows a secret.
func TestOAuthAddBrowser(t *testing.T) {
	e := newOAuthEnv(t, oidcserver.Options{AccessTokenLifetime: 5 * time.Second})
	l := startCLI(t, e.env, e.generic("work", "--auth-url", e.srv.AuthURL)...)
	listener := e.browse(t, l)
	code, out, errOut := l.wait(t)
	if code != ExitOK || !strings.Contains(out, "Added account work") || !strings.Contains(errOut, "Authorized.") {
		t.Fatalf("account add: exit %d\n%s%s", code, out, errOut)
	}
	closed(t, listener)
	e.noSecrets(t, out, errOut)
	acct := e.account(t, "work")
	o := acct.GetOauth2()
	if acct.AuthMethod != mailbusv1.AuthMethod_AUTH_METHOD_XOAUTH2 || o.GetProvider() != mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC ||
		o.GetTokenUrl() != e.srv.TokenURL || o.GetClientId() != e.srv.ClientID || strings.Join(o.GetScopes(), " ") != "offline_access mail" ||
		acct.Username != e.srv.User.Email {
		t.Errorf("account: %v", acct)
	}
	e.tokenWorks(t, acct.Id, false)
	before := e.srv.Refreshes()
	e.tokenWorks(t, acct.Id, true)
	if e.srv.Refreshes() <= before {
		t.Errorf("a forced renewal sent no refresh_token grant")
	}
	code, out, _ = run(t, e.env, "account", "show", "work")
	if code != ExitOK || !strings.Contains(out, "OAuth 2.0 (XOAUTH2), provider generic, client id "+e.srv.ClientID) {
		t.Errorf("account show:\n%s", out)
	}
	e.noSecrets(t, out)
}

// TestOAuthAddDevice: --oauth-device shows the verification URL and the
// user code; once the user allows on the server's page, the account is
// added with a working refresh token.
func TestOAuthAddDevice(t *testing.T) {
	e := newOAuthEnv(t, oidcserver.Options{AccessTokenLifetime: 5 * time.Second})
	l := startCLI(t, e.env, e.generic("phone", "--oauth-device", "--device-auth-url", e.srv.DeviceAuthURL)...)
	if l.line(t, e.srv.Issuer+"/device") == "" {
		_, _, errOut := l.wait(t)
		t.Fatalf("no verification URL:\n%s", errOut)
	}
	codeLine := l.line(t, "enter the code")
	userCode := strings.TrimSpace(strings.TrimPrefix(codeLine, "and enter the code"))
	if err := e.srv.ApproveDevice(context.Background(), userCode); err != nil {
		t.Fatalf("approve %q: %v", userCode, err)
	}
	code, out, errOut := l.wait(t)
	if code != ExitOK || !strings.Contains(out, "Added account phone") {
		t.Fatalf("account add --oauth-device: exit %d\n%s%s", code, out, errOut)
	}
	e.noSecrets(t, out, errOut)
	e.tokenWorks(t, e.account(t, "phone").Id, true)
}

// grant obtains a refresh token from the test server as an app that runs
// OAuth itself would.
func (e *oauthEnv) grant(t *testing.T) string {
	t.Helper()
	c := &oauthflow.Config{Endpoints: oauthflow.Endpoints{TokenURL: e.srv.TokenURL, DeviceAuthURL: e.srv.DeviceAuthURL},
		ClientID: e.srv.ClientID, ClientSecret: e.srv.ClientSecret, Scopes: []string{"offline_access", "mail"}}
	ctx, cancel := context.WithTimeout(context.Background(), oauthWait)
	defer cancel()
	tok, err := c.Device(ctx, func(d oauthflow.DeviceCode) {
		if err := e.srv.ApproveDevice(ctx, d.UserCode); err != nil {
			t.Errorf("approve: %v", err)
		}
	})
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return tok.RefreshToken
}

// TestOAuthRefreshTokenFile: --refresh-token-file skips the flow; the
// token is checked with one refresh (its rotated successor is what the
// store gets). A wrong client secret and a used refresh token are refused
// naming the flag, and no account is added.
func TestOAuthRefreshTokenFile(t *testing.T) {
	e := newOAuthEnv(t, oidcserver.Options{AccessTokenLifetime: 5 * time.Second})
	rt := e.grant(t)
	rtFile := writeFile(t, "refresh-token", rt+"\n")

	wrong := writeFile(t, "wrong-secret", "not-the-secret\n")
	code, out, errOut := run(t, e.env, append(e.generic("bad"), "--refresh-token-file", rtFile, "--client-secret-file", wrong)...)
	if code == ExitOK || !strings.Contains(errOut, "--client-secret-file: the authorization server refused") || !strings.Contains(errOut, "invalid_client") {
		t.Errorf("wrong client secret: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, "not-the-secret") {
		t.Errorf("the error shows the client secret: %s", errOut)
	}

	code, out, errOut = run(t, e.env, append(e.generic("app"), "--refresh-token-file", rtFile)...)
	if code != ExitOK || !strings.Contains(out, "Added account app") {
		t.Fatalf("account add --refresh-token-file: exit %d\n%s%s", code, out, errOut)
	}
	e.noSecrets(t, out, errOut)
	e.tokenWorks(t, e.account(t, "app").Id, true)

	// The file's token was rotated by the check: it is refused now.
	code, _, errOut = run(t, e.env, append(e.generic("again"), "--refresh-token-file", rtFile)...)
	if code == ExitOK || !strings.Contains(errOut, "--refresh-token-file: the authorization server refused the refresh token") {
		t.Errorf("a used refresh token: exit %d %s", code, errOut)
	}
	ctx, cancel := context.WithTimeout(context.Background(), oauthWait)
	defer cancel()
	list, err := e.accounts.ListAccounts(ctx, &mailbusv1.ListAccountsRequest{})
	if err != nil || len(list.Accounts) != 1 {
		t.Errorf("accounts after the refusals: %v %v, want only app", list.GetAccounts(), err)
	}
}

// TestOAuthReauthorize: the server withdraws the grant; the store's next
// renewal parks the account (REAUTHORIZATION_NEEDED); status and account
// show say to run account update --reauthorize; that runs the browser
// flow again, un-parks the account, and the store's token works again.
func TestOAuthReauthorize(t *testing.T) {
	e := newOAuthEnv(t, oidcserver.Options{AccessTokenLifetime: 5 * time.Second})
	rtFile := writeFile(t, "refresh-token", e.grant(t)+"\n")
	if code, out, errOut := run(t, e.env, append(e.generic("work"), "--refresh-token-file", rtFile)...); code != ExitOK {
		t.Fatalf("account add: %d %s%s", code, out, errOut)
	}
	id := e.account(t, "work").Id
	e.srv.RevokeAll()
	ctx, cancel := context.WithTimeout(context.Background(), oauthWait)
	defer cancel()
	// A forced refresh shares a renewal already in flight (decision 36):
	// the in-process fetcher's, started before the revocation, may answer
	// the first call with its token (seen once in CI). A renewal that
	// starts after the revocation must be refused.
	var err error
	for range 3 {
		if _, err = e.ingest.GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: id, Refresh: true}); err != nil {
			break
		}
	}
	if !reauthNeeded(err) {
		t.Fatalf("GetAccountSecret after the grant was withdrawn: %v, want REAUTHORIZATION_NEEDED", err)
	}
	if st := e.account(t, "work").GetStatus(); st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Fatalf("status %v, want parked", st)
	}
	want := "mailbus account update work --reauthorize --client-secret-file FILE --auth-url URL"
	for _, args := range [][]string{{"status"}, {"account", "show", "work"}} {
		if _, out, _ := run(t, e.env, args...); !strings.Contains(out, want) {
			t.Errorf("%s does not say %q:\n%s", strings.Join(args, " "), want, out)
		}
	}

	l := startCLI(t, e.env, "account", "update", "work", "--reauthorize", "--client-secret-file", e.secretFile, "--auth-url", e.srv.AuthURL)
	listener := e.browse(t, l)
	code, out, errOut := l.wait(t)
	if code != ExitOK || !strings.Contains(out, "OAuth refresh token") {
		t.Fatalf("account update --reauthorize: exit %d\n%s%s", code, out, errOut)
	}
	closed(t, listener)
	e.noSecrets(t, out, errOut)
	if st := e.account(t, "work").GetStatus(); st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Errorf("still parked after --reauthorize: %v", st)
	}
	e.tokenWorks(t, id, true)
}

func reauthNeeded(err error) bool {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition {
		return false
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok && ei.Reason == "REAUTHORIZATION_NEEDED" {
			return true
		}
	}
	return false
}

// TestOAuthBadInput: flags that cannot work are refused before anything
// is asked, naming the flag; an authorization the user denies, a redirect
// with a forged state and a wrong client secret end the flow with an
// error that says so. No account is added, and the listener is closed.
func TestOAuthBadInput(t *testing.T) {
	e := newOAuthEnv(t, oidcserver.Options{})
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown provider", []string{"account", "add", "--email", "a@example.com", "--oauth", "yahoo", "--client-id", "x"}, `--oauth "yahoo": want google, microsoft or generic`},
		{"token URL not HTTPS", []string{"account", "add", "--email", "a@example.com", "--host", "imap.example.com", "--oauth", "generic", "--client-id", "x",
			"--token-url", "http://auth.example.com/token", "--auth-url", "https://auth.example.com/auth"}, "--token-url: \"http://auth.example.com/token\" is not HTTPS"},
		{"auth URL not HTTPS", []string{"account", "add", "--email", "a@example.com", "--host", "imap.example.com", "--oauth", "generic", "--client-id", "x",
			"--token-url", "https://auth.example.com/token", "--auth-url", "http://auth.example.com/auth"}, "--auth-url: \"http://auth.example.com/auth\" is not HTTPS"},
		{"no client id", []string{"account", "add", "--email", "a@gmail.com", "--oauth", "google"}, "--oauth needs --client-id"},
		{"google device", []string{"account", "add", "--email", "a@gmail.com", "--oauth", "google", "--client-id", "x", "--oauth-device"}, "--oauth-device: Google's device flow does not allow the Gmail scope"},
		{"token URL for google", []string{"account", "add", "--email", "a@gmail.com", "--oauth", "google", "--client-id", "x", "--token-url", "https://x.example/t"}, "--token-url is for --oauth generic only"},
		{"generic without auth URL", []string{"account", "add", "--email", "a@example.com", "--host", "h", "--oauth", "generic", "--client-id", "x", "--token-url", "https://x.example/t"}, "--oauth generic needs --auth-url"},
		{"client id without oauth", []string{"account", "add", "--email", "a@example.com", "--host", "h", "--client-id", "x"}, "--client-id goes with --oauth"},
		{"oauth and password", []string{"account", "add", "--email", "a@gmail.com", "--oauth", "google", "--client-id", "x", "--password-env", "PW"}, "not a password"},
		{"empty secret file", []string{"account", "add", "--email", "a@gmail.com", "--oauth", "google", "--client-id", "x", "--client-secret-file", writeFile(t, "empty", "\n")}, "--client-secret-file"},
		{"reauthorize a password account", []string{"account", "update", "pw", "--reauthorize"}, "has no OAuth credentials"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(t, e.env, c.args...)
			if code == ExitOK || !strings.Contains(errOut, c.want) {
				t.Errorf("exit %d, want an error with %q:\n%s%s", code, c.want, out, errOut)
			}
		})
		if c.name == "oauth and password" {
			// The account for "reauthorize a password account".
			env := map[string]string{"PW": "pw"}
			for k, v := range e.env {
				env[k] = v
			}
			if code, _, errOut := run(t, env, "account", "add", "--name", "pw", "--protocol", "imap", "--host", "127.0.0.1", "--port", "1",
				"--security", "none", "--username", "u", "--password-env", "PW"); code != ExitOK {
				t.Fatalf("password account: %s", errOut)
			}
		}
	}

	t.Run("access denied", func(t *testing.T) {
		l := startCLI(t, e.env, e.generic("denied", "--auth-url", e.srv.AuthURL)...)
		loc, err := e.srv.Deny(context.Background(), l.line(t, e.srv.AuthURL))
		if err != nil {
			t.Fatal(err)
		}
		if resp, err := http.Get(loc.String()); err == nil {
			resp.Body.Close()
		}
		code, _, errOut := l.wait(t)
		if code == ExitOK || !strings.Contains(errOut, "the authorization was denied") || !strings.Contains(errOut, "access_denied") {
			t.Errorf("exit %d:\n%s", code, errOut)
		}
		closed(t, loc.Host)
	})
	t.Run("state mismatch", func(t *testing.T) {
		l := startCLI(t, e.env, e.generic("forged", "--auth-url", e.srv.AuthURL)...)
		loc, err := e.srv.Authorize(context.Background(), l.line(t, e.srv.AuthURL))
		if err != nil {
			t.Fatal(err)
		}
		q := loc.Query()
		q.Set("state", "forged")
		loc.RawQuery = q.Encode()
		if resp, err := http.Get(loc.String()); err == nil {
			resp.Body.Close()
		}
		code, _, errOut := l.wait(t)
		if code == ExitOK || !strings.Contains(errOut, "state does not match") {
			t.Errorf("exit %d:\n%s", code, errOut)
		}
		closed(t, loc.Host)
	})
	t.Run("wrong client secret", func(t *testing.T) {
		args := e.generic("wrong", "--auth-url", e.srv.AuthURL)
		args = append(args, "--client-secret-file", writeFile(t, "wrong", "not-the-secret\n"))
		l := startCLI(t, e.env, args...)
		host := e.browse(t, l)
		code, _, errOut := l.wait(t)
		if code == ExitOK || !strings.Contains(errOut, "--client-secret-file: the authorization server refused") || strings.Contains(errOut, "not-the-secret") {
			t.Errorf("exit %d:\n%s", code, errOut)
		}
		closed(t, host)
	})
	ctx, cancel := context.WithTimeout(context.Background(), oauthWait)
	defer cancel()
	list, err := e.accounts.ListAccounts(ctx, &mailbusv1.ListAccountsRequest{})
	if err != nil || len(list.Accounts) != 1 {
		t.Errorf("accounts: %v %v, want only the password account", list.GetAccounts(), err)
	}
}

// TestOAuthGoogleDefaults: --email alice@gmail.com --oauth google (no
// --host) finds Gmail's server from the preset and sends the browser to
// Google with the Gmail scope, offline access with consent, the login
// hint, PKCE S256 and a loopback redirect; ending the command (Ctrl-C)
// adds nothing and closes the listener. Nothing reaches Google: the
// test only reads the URL.
func TestOAuthGoogleDefaults(t *testing.T) {
	e := newOAuthEnv(t, oidcserver.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := startCLIContext(ctx, t, e.env, "account", "add", "--email", "alice@gmail.com", "--oauth", "google", "--client-id", "id.apps.googleusercontent.com",
		"--client-secret-file", e.secretFile)
	line := l.line(t, "https://accounts.google.com/o/oauth2/v2/auth?")
	cancel()
	code, out, errOut := l.wait(t)
	u, err := url.Parse(line)
	if err != nil || line == "" {
		t.Fatalf("no Google URL (%v):\n%s%s", err, out, errOut)
	}
	q := u.Query()
	for k, want := range map[string]string{"client_id": "id.apps.googleusercontent.com", "scope": "https://mail.google.com/", "access_type": "offline",
		"prompt": "consent", "login_hint": "alice@gmail.com", "code_challenge_method": "S256", "response_type": "code"} {
		if q.Get(k) != want {
			t.Errorf("%s = %q, want %q", k, q.Get(k), want)
		}
	}
	redirect, err := url.Parse(q.Get("redirect_uri"))
	if err != nil || redirect.Hostname() != "127.0.0.1" || redirect.Port() == "" {
		t.Errorf("redirect_uri %q, want http://127.0.0.1:PORT/", q.Get("redirect_uri"))
	}
	// An interrupted command exits 0 (the user asked for it) and adds
	// nothing.
	if !strings.Contains(out+errOut, "Found imap.gmail.com:993") || strings.Contains(out, "Added account") {
		t.Errorf("exit %d, want an interrupted flow after finding imap.gmail.com:\n%s%s", code, out, errOut)
	}
	if redirect != nil {
		closed(t, redirect.Host)
	}
	e.noSecrets(t, out, errOut)
	ctx2, cancel2 := context.WithTimeout(context.Background(), oauthWait)
	defer cancel2()
	if list, err := e.accounts.ListAccounts(ctx2, &mailbusv1.ListAccountsRequest{}); err != nil || len(list.Accounts) != 0 {
		t.Errorf("accounts after an interrupted flow: %v %v", list.GetAccounts(), err)
	}
}

// TestReauthHint: a parked OAuth account says to run --reauthorize, for
// invalid_grant and for credentials cleared by a move; other parked
// accounts keep their hints.
func TestReauthHint(t *testing.T) {
	parked := func(reason string, o *mailbusv1.Oauth2Credentials) *mailbusv1.Account {
		return &mailbusv1.Account{Name: "work", Oauth2: o, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: reason}}
	}
	google := &mailbusv1.Oauth2Credentials{Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GOOGLE}
	generic := &mailbusv1.Oauth2Credentials{Provider: mailbusv1.Oauth2Provider_OAUTH2_PROVIDER_GENERIC}
	for _, c := range []struct {
		acct      *mailbusv1.Account
		want, not string
	}{
		{parked("re-authorization needed: the OAuth server refused the refresh token (invalid_grant)", google), "mailbus account update work --reauthorize --client-secret-file FILE`", "--auth-url"},
		{parked("re-authorization needed: the OAuth server refused the refresh token (invalid_grant)", generic), "--reauthorize --client-secret-file FILE --auth-url URL`", ""},
		{parked("the server's host, port or security changed, so the stored OAuth credentials were cleared", google), "were cleared when it moved to another server: authorize again", "--password"},
		{parked("authentication failed: [AUTHENTICATIONFAILED]", nil), "--password", "--reauthorize"},
		{parked("re-authorization needed: the OAuth server refused the client (invalid_client): check the client id", google), "refused the account's OAuth client", "refresh token"},
		{parked("re-authorization needed: the OAuth server refused the account's credentials (invalid_scope): check", google), "its reason is in the status", "refresh token ("},
		// A login the mail server refused although the store's token is
		// fresh (parked by the fetcher): no password to set.
		{parked("authentication failed: [AUTHENTICATIONFAILED] Invalid credentials", google), "--reauthorize", "--password"},
	} {
		got := stateHint(c.acct)
		if !strings.Contains(got, c.want) || (c.not != "" && strings.Contains(got, c.not)) {
			t.Errorf("%q: hint %q, want %q and not %q", c.acct.Status.Reason, got, c.want, c.not)
		}
	}
}

// TestOAuthPublicClient: a public client (no secret, as a Microsoft app
// registration with public client flows) gets its refresh token with the
// device flow and with the browser flow (PKCE alone protects the code),
// and the store renews with it; after the grant is withdrawn,
// --reauthorize --oauth-device un-parks the account.
func TestOAuthPublicClient(t *testing.T) {
	e := newOAuthEnv(t, oidcserver.Options{PublicClient: true})
	l := startCLI(t, e.env, e.generic("device", "--oauth-device", "--device-auth-url", e.srv.DeviceAuthURL)...)
	codeLine := l.line(t, "enter the code")
	if err := e.srv.ApproveDevice(context.Background(), strings.TrimSpace(strings.TrimPrefix(codeLine, "and enter the code"))); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if code, out, errOut := l.wait(t); code != ExitOK || !strings.Contains(out, "Added account device") {
		t.Fatalf("device flow: exit %d\n%s%s", code, out, errOut)
	}
	e.tokenWorks(t, e.account(t, "device").Id, true)

	l = startCLI(t, e.env, e.generic("browser", "--auth-url", e.srv.AuthURL)...)
	e.browse(t, l)
	if code, out, errOut := l.wait(t); code != ExitOK || !strings.Contains(out, "Added account browser") {
		t.Fatalf("browser flow: exit %d\n%s%s", code, out, errOut)
	}
	e.tokenWorks(t, e.account(t, "browser").Id, true)

	// Withdrawn: the device flow re-authorizes the parked account.
	id := e.account(t, "device").Id
	e.srv.RevokeAll()
	ctx, cancel := context.WithTimeout(context.Background(), oauthWait)
	defer cancel()
	if _, err := e.ingest.GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: id, Refresh: true}); !reauthNeeded(err) {
		t.Fatalf("after the grant was withdrawn: %v, want REAUTHORIZATION_NEEDED", err)
	}
	l = startCLI(t, e.env, "account", "update", "device", "--reauthorize", "--oauth-device", "--device-auth-url", e.srv.DeviceAuthURL)
	codeLine = l.line(t, "enter the code")
	if err := e.srv.ApproveDevice(ctx, strings.TrimSpace(strings.TrimPrefix(codeLine, "and enter the code"))); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if code, out, errOut := l.wait(t); code != ExitOK || !strings.Contains(out, "OAuth refresh token") {
		t.Fatalf("account update --reauthorize --oauth-device: exit %d\n%s%s", code, out, errOut)
	}
	if st := e.account(t, "device").GetStatus(); st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED {
		t.Errorf("still parked after --reauthorize --oauth-device: %v", st)
	}
	e.tokenWorks(t, id, true)
}

// TestOAuthExplain: the authorization server's refusals name the flag at
// fault.
func TestOAuthExplain(t *testing.T) {
	withSecret := &oauthPlan{secretGiven: true, flow: oauthflow.Config{ClientID: "id", Scopes: []string{"a", "b"}}}
	noSecret := &oauthPlan{flow: oauthflow.Config{ClientID: "id"}}
	fromFile := &oauthPlan{refreshToken: "x", secretGiven: true}
	for _, c := range []struct {
		p    *oauthPlan
		err  error
		want string
	}{
		{withSecret, &oauthflow.Error{Endpoint: "token", Status: 401, Code: "invalid_client"}, "--client-secret-file: the authorization server refused the client secret or --client-id id"},
		{noSecret, &oauthflow.Error{Endpoint: "token", Status: 401, Code: "invalid_client"}, "--client-secret-file: the authorization server refused the client"},
		{noSecret, &oauthflow.Error{Endpoint: "token", Status: 400, Code: "invalid_request", Description: "client_secret is missing."}, "--client-secret-file: the token endpoint refused the request"},
		{fromFile, &oauthflow.Error{Endpoint: "token", Status: 400, Code: "invalid_grant"}, "--refresh-token-file: the authorization server refused the refresh token"},
		{withSecret, &oauthflow.Error{Endpoint: "authorization", Code: "invalid_scope"}, "--scope: the authorization server refused the scopes a b"},
		{withSecret, &oauthflow.Error{Endpoint: "authorization", Code: "access_denied"}, "the authorization was denied"},
		{withSecret, &oauthflow.Error{Endpoint: "token", Code: "expired_token"}, "the device code expired"},
		{withSecret, oauthflow.ErrStateMismatch, "state does not match"},
	} {
		if got := c.p.explain(c.err).Error(); !strings.Contains(got, c.want) {
			t.Errorf("%v: %q, want %q", c.err, got, c.want)
		}
	}
}
