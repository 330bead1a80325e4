package pop3_test

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

func TestLoginMechanisms(t *testing.T) {
	const token = "ya29.token"
	tests := []struct {
		name  string
		opts  []pop3test.Option
		creds pop3.Credentials
		mech  pop3.Mechanism
		sent  string // prefix of the command that logged in
	}{
		{"user/pass", nil, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser, "PASS"},
		{"auto without SASL", nil, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismAuto, "PASS"},
		{"plain", []pop3test.Option{pop3test.WithSASL("PLAIN")}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismPlain, "AUTH PLAIN "},
		{"auto prefers PLAIN", []pop3test.Option{pop3test.WithSASL("PLAIN")}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismAuto, "AUTH PLAIN "},
		{"xoauth2", []pop3test.Option{pop3test.WithSASL("PLAIN", "XOAUTH2")}, pop3.Credentials{Username: user, Token: token}, pop3.MechanismXOAUTH2, "AUTH XOAUTH2 "},
		{"auto with token", []pop3test.Option{pop3test.WithSASL("XOAUTH2")}, pop3.Credentials{Username: user, Token: token}, pop3.MechanismAuto, "AUTH XOAUTH2 "},
		{"oauthbearer", []pop3test.Option{pop3test.WithSASL("OAUTHBEARER")}, pop3.Credentials{Username: user, Token: token}, pop3.MechanismOAuthBearer, "AUTH OAUTHBEARER "},
		{"auto prefers OAUTHBEARER", []pop3test.Option{pop3test.WithSASL("PLAIN", "XOAUTH2", "OAUTHBEARER")}, pop3.Credentials{Username: user, Token: token}, pop3.MechanismAuto, "AUTH OAUTHBEARER "},
		{"apop", []pop3test.Option{pop3test.WithAPOP()}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismAPOP, "APOP alice "},
		{"auto APOP without USER", []pop3test.Option{pop3test.WithAPOP(), pop3test.WithoutUSER()}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismAuto, "APOP alice "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := append([]pop3test.Option{
				pop3test.WithMailbox(user, pass, messages(1, simpleMessage)...),
				pop3test.WithXOAUTH2Token(user, token),
			}, tt.opts...)
			srv := pop3test.NewServer(t, opts...)
			c := dial(t, srv, nil)
			if err := c.Login(context.Background(), tt.creds, tt.mech); err != nil {
				t.Fatalf("Login: %v", err)
			}
			if n, _, err := c.Stat(context.Background()); err != nil || n != 1 {
				t.Fatalf("Stat after login: %d %v", n, err)
			}
			found := false
			for _, cmd := range srv.Commands() {
				found = found || strings.HasPrefix(cmd, tt.sent)
			}
			if !found {
				t.Fatalf("no %q in %q", tt.sent, srv.Commands())
			}
		})
	}
}

func TestLoginFailures(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name      string
		opts      []pop3test.Option
		creds     pop3.Credentials
		mech      pop3.Mechanism
		authFail  bool // errors.Is ErrAuthFailed
		temporary bool
		target    error // another sentinel it must match, if any
	}{
		{"bad password", nil, pop3.Credentials{Username: user, Password: "wrong"}, pop3.MechanismUser, true, false, nil},
		{"bad password plain", []pop3test.Option{pop3test.WithSASL("PLAIN")}, pop3.Credentials{Username: user, Password: "wrong"}, pop3.MechanismPlain, true, false, nil},
		{"bad apop", []pop3test.Option{pop3test.WithAPOP()}, pop3.Credentials{Username: user, Password: "wrong"}, pop3.MechanismAPOP, true, false, nil},
		{"plain -ERR without code", []pop3test.Option{pop3test.WithFault(pop3test.Reply("PASS", "-ERR nope"))}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser, true, false, nil},
		{"sys/perm", []pop3test.Option{pop3test.WithFault(pop3test.Reply("PASS", "-ERR [SYS/PERM] account disabled"))}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser, false, false, nil},
		{"sys/temp", []pop3test.Option{pop3test.WithFault(pop3test.Reply("PASS", "-ERR [SYS/TEMP] try later"))}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser, false, true, nil},
		{"login-delay", []pop3test.Option{pop3test.WithFault(pop3test.Reply("PASS", "-ERR [LOGIN-DELAY] too soon"))}, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser, false, true, nil},
		{"plain not offered", nil, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismPlain, false, false, pop3.ErrAuthUnsupported},
		{"xoauth2 not offered", []pop3test.Option{pop3test.WithSASL("PLAIN")}, pop3.Credentials{Username: user, Token: "t"}, pop3.MechanismAuto, false, false, pop3.ErrAuthUnsupported},
		{"oauthbearer not offered", []pop3test.Option{pop3test.WithSASL("XOAUTH2")}, pop3.Credentials{Username: user, Token: "t"}, pop3.MechanismOAuthBearer, false, false, pop3.ErrAuthUnsupported},
		{"oauthbearer wrong token", []pop3test.Option{pop3test.WithSASL("OAUTHBEARER")}, pop3.Credentials{Username: user, Token: "wrong"}, pop3.MechanismAuto, true, false, nil},
		{"apop without timestamp", nil, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismAPOP, false, false, pop3.ErrAPOPUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, append([]pop3test.Option{pop3test.WithMailbox(user, pass)}, tt.opts...)...)
			c := dial(t, srv, nil)
			err := c.Login(ctx, tt.creds, tt.mech)
			if err == nil {
				t.Fatal("Login succeeded")
			}
			if errors.Is(err, pop3.ErrAuthFailed) != tt.authFail {
				t.Errorf("errors.Is(%v, ErrAuthFailed) = %v", err, !tt.authFail)
			}
			if pop3.Temporary(err) != tt.temporary {
				t.Errorf("Temporary(%v) = %v", err, !tt.temporary)
			}
			if tt.target != nil && !errors.Is(err, tt.target) {
				t.Errorf("%v does not match %v", err, tt.target)
			}
			if strings.Contains(err.Error(), "wrong") {
				t.Errorf("password in error %q", err)
			}
			if err := c.Noop(ctx); err != nil && errors.Is(err, pop3.ErrClosed) {
				t.Errorf("session unusable after a rejected login: %v", err)
			}
		})
	}
}

// A refused bearer token: the server's JSON error challenge is answered as
// each mechanism says (XOAUTH2: an empty line; OAUTHBEARER: %x01, RFC 7628
// section 3.2.3), the -ERR [AUTH] that follows is a permanent
// authentication failure carrying the JSON status, and the session can log
// in again with a good token.
func TestTokenFailureContinuation(t *testing.T) {
	for _, tt := range []struct {
		mech   pop3.Mechanism
		answer string // the client's answer to the error challenge
		status string
	}{
		{pop3.MechanismXOAUTH2, "", `"status":"401"`},
		{pop3.MechanismOAuthBearer, "AQ==", `"status":"invalid_token"`},
	} {
		t.Run(string(tt.mech), func(t *testing.T) {
			srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass), pop3test.WithSASL(string(tt.mech)),
				pop3test.WithXOAUTH2Token(user, "good"))
			c := dial(t, srv, nil)
			err := c.Login(context.Background(), pop3.Credentials{Username: user, Token: "expired"}, pop3.MechanismAuto)
			var pe *pop3.Error
			if !errors.As(err, &pe) || pe.Code != "AUTH" || pe.Command != "AUTH "+string(tt.mech) {
				t.Fatalf("Login = %v, want -ERR [AUTH] to AUTH %s", err, tt.mech)
			}
			if !strings.Contains(pe.Message, tt.status) || !errors.Is(err, pop3.ErrAuthFailed) || pop3.Temporary(err) {
				t.Fatalf("error %q lacks the JSON status or is not a permanent auth failure", err)
			}
			if strings.Contains(err.Error(), "expired") {
				t.Fatalf("token in error %q", err)
			}
			cmds := srv.Commands()
			if len(cmds) < 2 || !strings.HasPrefix(cmds[len(cmds)-2], "AUTH "+string(tt.mech)+" ") || cmds[len(cmds)-1] != tt.answer {
				t.Fatalf("commands %q: want AUTH %s <ir> then %q", cmds, tt.mech, tt.answer)
			}
			// The session is back in the AUTHORIZATION state and usable.
			if err := c.Login(context.Background(), pop3.Credentials{Username: user, Token: "good"}, pop3.MechanismAuto); err != nil {
				t.Fatalf("second Login: %v", err)
			}
		})
	}
}

// The OAUTHBEARER response is RFC 7628's, with the user escaped as a GS2
// saslname (RFC 5801: "," as "=2C", "=" as "=3D").
func TestOAuthBearerResponse(t *testing.T) {
	for _, tt := range []struct{ user, want string }{
		{"alice@example.com", "n,a=alice@example.com,\x01auth=Bearer tok\x01\x01"},
		{"a,b=c", "n,a=a=2Cb=3Dc,\x01auth=Bearer tok\x01\x01"},
	} {
		if got := string(pop3.OAuthBearerResponse(tt.user, "tok")); got != tt.want {
			t.Errorf("OAuthBearerResponse(%q) = %q, want %q", tt.user, got, tt.want)
		}
	}
	// And the test server reads the escaped user back.
	srv := pop3test.NewServer(t, pop3test.WithMailbox("a,b=c", pass), pop3test.WithSASL("OAUTHBEARER"),
		pop3test.WithXOAUTH2Token("a,b=c", "tok"))
	c := dial(t, srv, nil)
	if err := c.Login(context.Background(), pop3.Credentials{Username: "a,b=c", Token: "tok"}, pop3.MechanismAuto); err != nil {
		t.Fatalf("Login with an escaped user: %v", err)
	}
}

func TestSASLLongInitialResponse(t *testing.T) {
	token := strings.Repeat("t", 400) // too long for the AUTH line (RFC 5034: 255 octets)
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass), pop3test.WithSASL("XOAUTH2"),
		pop3test.WithXOAUTH2Token(user, token))
	c := dial(t, srv, nil)
	if err := c.Login(context.Background(), pop3.Credentials{Username: user, Token: token}, pop3.MechanismXOAUTH2); err != nil {
		t.Fatal(err)
	}
	cmds := srv.Commands()
	ir := base64.StdEncoding.EncodeToString([]byte("user=" + user + "\x01auth=Bearer " + token + "\x01\x01"))
	if !containsSeq(cmds, "AUTH XOAUTH2", ir) {
		t.Fatalf("commands %q: want AUTH XOAUTH2, then the response on its own line", cmds)
	}
}

func containsSeq(cmds []string, a, b string) bool {
	for i := 0; i+1 < len(cmds); i++ {
		if cmds[i] == a && cmds[i+1] == b {
			return true
		}
	}
	return false
}

func TestLoginTwice(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass))
	c := login(t, srv, nil)
	if err := c.Login(context.Background(), pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser); err == nil {
		t.Fatal("second Login succeeded")
	}
}

func TestLoggerRedactsSecrets(t *testing.T) {
	var buf strings.Builder
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	for _, mech := range []pop3.Mechanism{pop3.MechanismUser, pop3.MechanismPlain} {
		srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(1, simpleMessage)...), pop3test.WithSASL("PLAIN"))
		opts := plain()
		opts.Logger = log
		c := dial(t, srv, opts)
		if err := c.Login(context.Background(), pop3.Credentials{Username: user, Password: pass}, mech); err != nil {
			t.Fatal(err)
		}
		retrAll(t, c, 1)
	}
	out := buf.String()
	if !strings.Contains(out, "cmd=PASS") || !strings.Contains(out, `cmd="AUTH PLAIN"`) {
		t.Errorf("log lacks the commands:\n%s", out)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	for _, secret := range []string{pass, ir, "body 1"} {
		if strings.Contains(out, secret) {
			t.Errorf("log contains %q:\n%s", secret, out)
		}
	}
}

// TestLoginArgumentWithLineBreak: a username or password with CR, LF or
// NUL is never sent (it would end USER or PASS early and start another
// command, such as DELE 1): Login fails with ErrInvalidArgument, which is
// permanent, and the server sees no such command.
func TestLoginArgumentWithLineBreak(t *testing.T) {
	for _, creds := range []pop3.Credentials{
		{Username: "victim\r\nDELE 1", Password: pass},
		{Username: user, Password: "x\r\nDELE 1"},
		{Username: user + "\x00", Password: pass},
	} {
		srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(1, simpleMessage)...))
		c := dial(t, srv, nil)
		err := c.Login(context.Background(), creds, pop3.MechanismUser)
		if !errors.Is(err, pop3.ErrInvalidArgument) || pop3.Temporary(err) {
			t.Errorf("Login(%q): %v (temporary %v), want a permanent ErrInvalidArgument", creds.Username, err, pop3.Temporary(err))
		}
		if strings.Contains(fmt.Sprint(err), "DELE") {
			t.Errorf("the error shows the argument: %v", err)
		}
		for _, cmd := range srv.Commands() {
			if strings.HasPrefix(cmd, "DELE") || strings.HasPrefix(cmd, "PASS") {
				t.Errorf("the server received %q", cmd)
			}
		}
	}
}
