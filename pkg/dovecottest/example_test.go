package dovecottest_test

import (
	"crypto/tls"
	"testing"

	"github.com/mailbus/mailbus/pkg/dovecottest"
)

func ExampleStart() {
	var t *testing.T // the test's *testing.T

	s := dovecottest.Start(t, &dovecottest.Options{
		Users: []dovecottest.User{{Name: "alice", Password: "secret"}},
		// Test the fallback path of a client that needs CONDSTORE.
		HideCapabilities: []string{"CONDSTORE", "QRESYNC"},
	})
	msg := []byte("Subject: hi\r\n\r\nhello\r\n")
	if err := s.Deliver("alice", "INBOX", msg, `\Seen`); err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", s.IMAPSAddr(), s.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// ... speak IMAP; then check the server side:
	if _, err := s.ChangeUIDValidity("alice", "INBOX"); err != nil {
		t.Fatal(err)
	}
}
