package pop3_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/mailbus/mailbus/pkg/pop3"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// TestCapabilitiesUTF8 reads the UTF8 capability and its USER argument.
func TestCapabilitiesUTF8(t *testing.T) {
	cases := []struct {
		caps          pop3.Capabilities
		offered, user bool
	}{
		{pop3.Capabilities{}, false, false},
		{pop3.Capabilities{"UTF8": nil}, true, false},
		{pop3.Capabilities{"UTF8": {"USER"}}, true, true},
		{pop3.Capabilities{"UTF8": {"user"}}, true, true},
		{pop3.Capabilities{"UTF8": {"OTHER"}}, true, false},
	}
	for _, tc := range cases {
		if offered, user := tc.caps.UTF8(); offered != tc.offered || user != tc.user {
			t.Errorf("%v: UTF8() = %v, %v, want %v, %v", tc.caps, offered, user, tc.offered, tc.user)
		}
	}
}

// TestUTF8Mode: a server that downgrades 8-bit mail sends a message with
// raw UTF-8 as stored once the session is in UTF-8 mode, before or after
// authentication; a refused UTF8 is an *Error and the session goes on.
func TestUTF8Mode(t *testing.T) {
	raw := []byte("From: J\xc3\xbcrgen <j@example.com>\r\nSubject: Gr\xc3\xbc\xc3\x9fe\r\n\r\n\xe6\x97\xa5\xe6\x9c\xac\r\n")
	cases := []struct {
		name   string
		before bool // UTF8 before Login
		refuse bool
	}{
		{"before login", true, false},
		{"after login", false, false},
		{"refused", true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := []pop3test.Option{pop3test.WithUTF8("USER"), pop3test.WithDowngrade(), pop3test.WithMailbox(user, pass, pop3test.Message{Data: raw})}
			if tc.refuse {
				opts = append(opts, pop3test.WithFault(pop3test.Reply("UTF8", "-ERR not now")))
			}
			srv := pop3test.NewServer(t, opts...)
			ctx := context.Background()
			c := dial(t, srv, nil)
			caps, err := c.Capabilities(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if offered, userArg := caps.UTF8(); !offered || !userArg {
				t.Fatalf("CAPA: UTF8 offered %v, USER %v", offered, userArg)
			}
			utf8 := func() {
				err := c.UTF8(ctx)
				var pe *pop3.Error
				switch {
				case tc.refuse && !errors.As(err, &pe):
					t.Errorf("refused UTF8: %v, want *pop3.Error", err)
				case !tc.refuse && err != nil:
					t.Errorf("UTF8: %v", err)
				}
			}
			if tc.before {
				utf8()
			}
			if err := c.Login(ctx, pop3.Credentials{Username: user, Password: pass}, pop3.MechanismUser); err != nil {
				t.Fatal(err)
			}
			if !tc.before {
				utf8()
			}
			if c.UTF8Mode() == tc.refuse {
				t.Errorf("UTF8Mode() = %v", c.UTF8Mode())
			}
			got := retrAll(t, c, 1)
			if exact := bytes.Equal(got, raw); exact == tc.refuse {
				t.Errorf("message exact %v, want %v:\n%q", exact, !tc.refuse, got)
			}
		})
	}
}
