package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/webhooksig"
	"github.com/mailbus/mailbus/services/mailbus/mailbus"
)

// startServer runs the all-in-one server in this process with its own
// data directory and returns the environment of the client commands.
func startServer(t *testing.T, cfg mailbus.Config) map[string]string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan mailbus.Info, 1)
	cfg.DataDir, cfg.Listener, cfg.MetricsListen = filepath.Join(t.TempDir(), "data"), ln, "-"
	cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.Ready = func(i mailbus.Info) { ready <- i }
	srv, err := mailbus.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = srv.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if runErr != nil {
			t.Errorf("server: %v", runErr)
		}
	})
	select {
	case info := <-ready:
		return map[string]string{"MAILBUS_SERVER": info.StoreAddr, "MAILBUS_TOKEN_FILE": info.AdminTokenFile}
	case <-done:
		t.Fatal("the server stopped before it was ready")
	}
	return nil
}

// receiver is an HTTP endpoint that answers with status and keeps the
// requests whose signature a secret (set later) verifies.
type receiver struct {
	*httptest.Server
	status int

	mu       sync.Mutex
	secret   string
	verified []*mailbusv1.WebhookPayload
	refused  []error
}

func newReceiver(t *testing.T, status int) *receiver {
	r := &receiver{status: status}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if err := webhooksig.Verify(req.Header.Get(webhooksig.Header), body, []byte(r.secret), time.Now(), 0); err != nil {
			r.refused = append(r.refused, err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		p := &mailbusv1.WebhookPayload{}
		if err := protojson.Unmarshal(body, p); err != nil {
			r.refused = append(r.refused, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.verified = append(r.verified, p)
		w.WriteHeader(r.status)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) setSecret(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.secret = s
}

func (r *receiver) got() (verified []*mailbusv1.WebhookPayload, refused []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(verified, r.verified...), append(refused, r.refused...)
}

// TestWebhookCommands drives the webhook commands against mailbus serve
// in this process (private webhooks allowed, receivers on loopback): add
// prints the id and the secret the service made, or uses --secret-file;
// list shows no secret; test reaches the endpoint signed with that
// secret and exits 1 when it is refused; remove ends it.
func TestWebhookCommands(t *testing.T) {
	env := startServer(t, mailbus.Config{AllowPrivateWebhooks: true})
	ok := newReceiver(t, http.StatusNoContent)
	failing := newReceiver(t, http.StatusServiceUnavailable)

	if code, out, errOut := run(t, env, "webhook", "list"); code != ExitOK || out != "" || !strings.Contains(errOut, "No webhooks") {
		t.Fatalf("list, none yet: exit %d\n%s%s", code, out, errOut)
	}

	code, out, errOut := run(t, env, "webhook", "add", "--url", ok.URL+"/hook", "--event", "message.created", "--include", "text,attachments", "--description", "crm")
	if code != ExitOK {
		t.Fatalf("add: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "whsec_") {
		t.Fatalf("add: want the id and the secret on standard output:\n%s", out)
	}
	okID, secret := lines[0], lines[1]
	ok.setSecret(secret)
	for _, want := range []string{"Added webhook " + okID, "events:   message.created", "include:  text,attachments", "shown only now"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("add: standard error lacks %q:\n%s", want, errOut)
		}
	}

	secretFile := filepath.Join(t.TempDir(), "secret")
	const given = "a-secret-of-the-receiver-0123456789"
	if err := os.WriteFile(secretFile, []byte(given+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	failing.setSecret(given)
	code, out, errOut = run(t, env, "webhook", "add", "--url", failing.URL, "--secret-file", secretFile)
	if code != ExitOK || !regexp.MustCompile(`^\S+\n$`).MatchString(out) || strings.Contains(errOut, "shown only now") {
		t.Fatalf("add --secret-file: exit %d, want only the id on standard output:\n%s%s", code, out, errOut)
	}
	failingID := strings.TrimSpace(out)

	code, out, errOut = run(t, env, "webhook", "list")
	if code != ExitOK || !strings.Contains(out, okID) || !strings.Contains(out, failingID) || !strings.Contains(out, "text,attachments") {
		t.Fatalf("list: exit %d\n%s%s", code, out, errOut)
	}
	_, jsonOut, _ := run(t, env, "webhook", "list", "--json")
	for _, s := range []string{secret, given, `"secret"`} {
		if strings.Contains(out+jsonOut, s) {
			t.Errorf("list shows the secret %q:\n%s%s", s, out, jsonOut)
		}
	}

	code, out, errOut = run(t, env, "webhook", "test", okID)
	if code != ExitOK || !strings.Contains(out, "to webhook "+okID+": 204") {
		t.Fatalf("test: exit %d\n%s%s", code, out, errOut)
	}
	verified, refused := ok.got()
	if len(verified) != 1 || verified[0].GetKind() != "webhook.test" || len(refused) > 0 {
		t.Fatalf("the receiver verified %v and refused %v; want the test event, signed with the printed secret", verified, refused)
	}
	code, out, errOut = run(t, env, "webhook", "test", failingID)
	if code != ExitError || !strings.Contains(out, ": 503") || !strings.Contains(errOut, "did not accept the test event") {
		t.Fatalf("test of an endpoint answering 503: exit %d, want %d\n%s%s", code, ExitError, out, errOut)
	}
	if verified, refused := failing.got(); len(verified) != 1 || len(refused) > 0 {
		t.Fatalf("--secret-file: the receiver verified %d and refused %v", len(verified), refused)
	}

	if code, out, errOut := run(t, env, "webhook", "deliveries", okID); code != ExitOK || out != "" || !strings.Contains(errOut, "No deliveries") {
		t.Fatalf("deliveries, none yet: exit %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := run(t, env, "webhook", "remove", failingID); code != ExitOK || !strings.Contains(out, "Removed webhook "+failingID) {
		t.Fatalf("remove: exit %d\n%s%s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"webhook", "test", failingID},
		{"webhook", "remove", failingID},
		{"webhook", "deliveries", failingID},
	} {
		if code, _, errOut := run(t, env, args...); code != ExitError || !strings.Contains(errOut, `no webhook "`+failingID+`"`) {
			t.Errorf("%v after remove: exit %d, want %d naming the webhook: %s", args, code, ExitError, errOut)
		}
	}
	if code, _, errOut := run(t, env, "webhook", "redeliver", okID, "999"); code != ExitError || !strings.Contains(errOut, `no delivery "999" of webhook "`+okID+`"`) {
		t.Errorf("redeliver of an unknown delivery: exit %d: %s", code, errOut)
	}
	if code, _, errOut := run(t, env, "webhook", "add", "--url", ok.URL, "--account", "nope"); code != ExitError || !strings.Contains(errOut, `no account "nope"`) {
		t.Errorf("add --account nope: exit %d: %s", code, errOut)
	}
}

// TestWebhookPrivateURLRefused: without --allow-private-webhooks (the
// default of serve) an endpoint on loopback is refused, with the
// service's reason.
func TestWebhookPrivateURLRefused(t *testing.T) {
	env := startServer(t, mailbus.Config{})
	r := newReceiver(t, http.StatusOK)
	code, out, errOut := run(t, env, "webhook", "add", "--url", r.URL)
	if code != ExitError || out != "" || !strings.Contains(errOut, "the webhooks service refused the request") || !strings.Contains(errOut, "loopback") {
		t.Fatalf("add of a loopback URL: exit %d, want %d and the service's reason:\n%s%s", code, ExitError, out, errOut)
	}
	if _, _, errOut := run(t, env, "webhook", "list"); !strings.Contains(errOut, "No webhooks") {
		t.Fatalf("a refused endpoint was added: %s", errOut)
	}
}

// TestWebhookRotateSecret: rotate-secret with an overlap gives the
// endpoint a new secret (printed once) while requests stay verifiable with
// the old one; list shows until when; a rotation to a secret from a file
// with --overlap 0 ends the earlier secrets at once.
func TestWebhookRotateSecret(t *testing.T) {
	env := startServer(t, mailbus.Config{AllowPrivateWebhooks: true})
	r := newReceiver(t, http.StatusNoContent)
	code, out, errOut := run(t, env, "webhook", "add", "--url", r.URL)
	if code != ExitOK {
		t.Fatalf("add: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("add: want the id and the secret:\n%s", out)
	}
	id, first := lines[0], lines[1]
	// sendTest sends a test event and says whether a receiver holding
	// secret verified it.
	sendTest := func(secret string) bool {
		t.Helper()
		r.setSecret(secret)
		before, _ := r.got()
		code, out, errOut := run(t, env, "webhook", "test", id)
		after, _ := r.got()
		verified := len(after) > len(before)
		if verified != (code == ExitOK) {
			t.Fatalf("test: exit %d but the receiver verified it: %v\n%s%s", code, verified, out, errOut)
		}
		return verified
	}
	if !sendTest(first) {
		t.Fatal("the receiver with the first secret refused the test event")
	}

	code, out, errOut = run(t, env, "webhook", "rotate-secret", id, "--overlap", "1h")
	if code != ExitOK || !strings.HasPrefix(out, "whsec_") || !strings.Contains(errOut, "the old one signs too until") {
		t.Fatalf("rotate-secret --overlap 1h: exit %d\n%s%s", code, out, errOut)
	}
	second := strings.TrimSpace(out)
	if second == first {
		t.Fatal("rotate-secret printed the old secret")
	}
	if !sendTest(first) || !sendTest(second) {
		t.Fatal("during the overlap a receiver with either secret must verify the request")
	}
	if _, out, _ := run(t, env, "webhook", "list"); !strings.Contains(out, "old secret until") {
		t.Errorf("list does not show the overlap:\n%s", out)
	}

	secretFile := filepath.Join(t.TempDir(), "secret")
	const third = "the-receivers-third-secret-0123456789"
	if err := os.WriteFile(secretFile, []byte(third+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = run(t, env, "webhook", "rotate-secret", id, "--secret-file", secretFile, "--overlap", "0")
	if code != ExitOK || out != "" || !strings.Contains(errOut, "the old one no longer signs") {
		t.Fatalf("rotate-secret --secret-file --overlap 0: exit %d, want nothing on standard output\n%s%s", code, out, errOut)
	}
	if sendTest(first) || sendTest(second) {
		t.Error("after a rotation without overlap an earlier secret still verifies")
	}
	if !sendTest(third) {
		t.Error("the secret from --secret-file does not verify")
	}
	if code, _, errOut := run(t, env, "webhook", "rotate-secret", "nosuch"); code != ExitError || !strings.Contains(errOut, `no webhook "nosuch"`) {
		t.Errorf("rotate-secret of an unknown webhook: exit %d: %s", code, errOut)
	}
}
