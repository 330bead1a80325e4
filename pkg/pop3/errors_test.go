package pop3_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"

	"github.com/mailbus/mailbus/pkg/pop3"
)

func TestTemporary(t *testing.T) {
	timeout := &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&pop3.Error{Command: "PASS", Code: "IN-USE"}, true},
		{&pop3.Error{Command: "RETR 1", Code: "SYS/TEMP"}, true},
		{&pop3.Error{Command: "RETR 1", Code: "SYS/TEMP/DISK"}, true},
		{&pop3.Error{Command: "PASS", Code: "LOGIN-DELAY"}, true},
		{&pop3.Error{Command: "", Code: ""}, true}, // -ERR greeting
		{&pop3.Error{Command: "PASS", Code: "AUTH"}, false},
		{&pop3.Error{Command: "PASS", Code: ""}, false},
		{&pop3.Error{Command: "RETR 1", Code: "SYS/PERM"}, false},
		{&pop3.Error{Command: "RETR 1", Code: ""}, false},
		{fmt.Errorf("pop3: STAT: %w", timeout), true},
		{fmt.Errorf("pop3: RETR 1: %w", io.ErrUnexpectedEOF), true},
		{&pop3.ProtocolError{Reason: "x"}, true},
		{fmt.Errorf("pop3: x: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("pop3: x: %w", context.Canceled), false},
		{fmt.Errorf("pop3: RETR 1: %w", pop3.ErrTooLarge), false},
		{fmt.Errorf("x: %w", pop3.ErrUIDLUnsupported), false},
		{fmt.Errorf("x: %w", pop3.ErrSTLSUnavailable), false},
		{fmt.Errorf("pop3: TLS handshake: %w", x509.UnknownAuthorityError{}), false},
		{fmt.Errorf("pop3: TLS handshake: %w", x509.HostnameError{Host: "x"}), false},
		{&net.DNSError{Err: "no such host", Name: "pop.invalid", IsNotFound: true}, false},
		{errors.New("something else"), true},
	}
	for _, tt := range tests {
		if got := pop3.Temporary(tt.err); got != tt.want {
			t.Errorf("Temporary(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestErrorIsAuthFailed(t *testing.T) {
	tests := []struct {
		err  *pop3.Error
		want bool
	}{
		{&pop3.Error{Command: "PASS"}, true},
		{&pop3.Error{Command: "USER"}, true},
		{&pop3.Error{Command: "APOP"}, true},
		{&pop3.Error{Command: "AUTH PLAIN"}, true},
		{&pop3.Error{Command: "AUTH XOAUTH2", Code: "AUTH"}, true},
		{&pop3.Error{Command: "PASS", Code: "IN-USE"}, false},
		{&pop3.Error{Command: "PASS", Code: "SYS/PERM"}, false},
		{&pop3.Error{Command: "RETR 1"}, false},
	}
	for _, tt := range tests {
		if got := errors.Is(tt.err, pop3.ErrAuthFailed); got != tt.want {
			t.Errorf("errors.Is(%v, ErrAuthFailed) = %v", tt.err, got)
		}
	}
	if s := (&pop3.Error{Command: "PASS", Code: "AUTH", Message: "bad"}).Error(); s != "pop3: PASS: -ERR [AUTH] bad" {
		t.Errorf("Error() = %q", s)
	}
}

func TestTemporaryClosed(t *testing.T) {
	err := fmt.Errorf("%w: %w", pop3.ErrClosed, fmt.Errorf("pop3: RETR 1: %w", pop3.ErrTooLarge))
	if !pop3.Temporary(err) {
		t.Error("a closed connection is worth a new one")
	}
}
