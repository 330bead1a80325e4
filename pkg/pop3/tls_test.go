package pop3_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

func TestImplicitTLS(t *testing.T) {
	msgs := messages(2, mixed)
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, msgs...), pop3test.WithImplicitTLS())
	opts := plain()
	opts.Security = pop3.SecurityTLS
	opts.TLSConfig = srv.ClientTLSConfig()
	c := login(t, srv, opts)
	if st, ok := c.TLSConnectionState(); !ok || !st.HandshakeComplete {
		t.Fatal("not encrypted")
	}
	if got := retrAll(t, c, 2); sum(got) != sum(wire(msgs[1].Data)) {
		t.Fatal("message differs over TLS")
	}
	if err := c.Quit(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestSTARTTLS(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass, messages(1, simpleMessage)...), pop3test.WithSTLS())
	opts := plain()
	opts.Security = pop3.SecuritySTARTTLS
	opts.TLSConfig = srv.ClientTLSConfig()
	c := login(t, srv, opts)
	if _, ok := c.TLSConnectionState(); !ok {
		t.Fatal("not encrypted")
	}
	// CAPA is asked again after STLS: what was said in plaintext is not
	// trusted.
	cmds := srv.Commands()
	if len(cmds) < 4 || !slices.Equal(cmds[:3], []string{"CAPA", "STLS", "CAPA"}) {
		t.Fatalf("commands %q", cmds)
	}
	if n, _, err := c.Stat(context.Background()); err != nil || n != 1 {
		t.Fatalf("Stat = %d %v", n, err)
	}
}

func TestSTARTTLSRefusals(t *testing.T) {
	tests := []struct {
		name string
		opts []pop3test.Option
	}{
		{"not offered", nil},
		{"no CAPA", []pop3test.Option{pop3test.WithoutCAPA()}},
		{"refused", []pop3test.Option{pop3test.WithSTLS(), pop3test.WithFault(pop3test.Reply("STLS", "-ERR not now"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := pop3test.NewServer(t, append([]pop3test.Option{pop3test.WithMailbox(user, pass)}, tt.opts...)...)
			opts := plain()
			opts.Security = pop3.SecuritySTARTTLS
			opts.TLSConfig = srv.ClientTLSConfig()
			_, err := pop3.Dial(context.Background(), srv.Addr(), opts)
			if !errors.Is(err, pop3.ErrSTLSUnavailable) || pop3.Temporary(err) {
				t.Fatalf("Dial = %v, want permanent ErrSTLSUnavailable", err)
			}
			srv.WaitIdle(0)
			for _, cmd := range srv.Commands() {
				if cmd != "CAPA" && cmd != "STLS" {
					t.Fatalf("sent %q in plaintext", cmd)
				}
			}
		})
	}
}

func TestSTARTTLSInjection(t *testing.T) {
	// A man in the middle appends a response to the +OK; it must not be
	// taken as coming from inside TLS.
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass), pop3test.WithSTLS(),
		pop3test.WithFault(pop3test.ReplyBytes("STLS", []byte("+OK begin\r\n+OK injected\r\n"))))
	opts := plain()
	opts.Security = pop3.SecuritySTARTTLS
	opts.TLSConfig = srv.ClientTLSConfig()
	_, err := pop3.Dial(context.Background(), srv.Addr(), opts)
	if !errors.Is(err, pop3.ErrProtocol) {
		t.Fatalf("Dial = %v, want a protocol error", err)
	}
}

func TestTLSUntrustedCertificate(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass), pop3test.WithImplicitTLS())
	opts := plain()
	opts.Security = pop3.SecurityTLS // system roots: the self-signed certificate is unknown
	_, err := pop3.Dial(context.Background(), srv.Addr(), opts)
	if err == nil || pop3.Temporary(err) {
		t.Fatalf("Dial = %v, want a permanent certificate error", err)
	}
	// Wrong name: trusted root, but the client expects another host.
	opts.TLSConfig = srv.ClientTLSConfig()
	opts.TLSConfig.ServerName = "pop.example.com"
	_, err = pop3.Dial(context.Background(), srv.Addr(), opts)
	if err == nil || pop3.Temporary(err) {
		t.Fatalf("Dial with a mismatching name = %v, want a permanent certificate error", err)
	}
}

func TestTLSAgainstPlaintextServer(t *testing.T) {
	srv := pop3test.NewServer(t, pop3test.WithMailbox(user, pass))
	opts := plain()
	opts.Security = pop3.SecurityTLS
	opts.TLSConfig = srv.ClientTLSConfig()
	_, err := pop3.Dial(context.Background(), srv.Addr(), opts)
	if err == nil || pop3.Temporary(err) {
		t.Fatalf("Dial = %v, want a permanent error", err)
	}
}
