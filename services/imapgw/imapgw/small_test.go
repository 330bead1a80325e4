package imapgw

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestSmallCommands: STORE FLAGS () of a message without flags, UID
// EXPUNGE *, COPY to the selected mailbox; admin and service tokens are
// no IMAP passwords.
func TestSmallCommands(t *testing.T) {
	e := startEnv(t)
	acct, inbox := e.account("work", "ann@example.com")
	tok, _ := e.token(false, acct.Id)
	e.appendMsg(inbox.Id, testMail("one"))
	last := e.appendMsg(inbox.Id, testMail("two"), `\Deleted`)
	gw := e.gateway(nil)
	c := gw.login(t, "work", tok, nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got, err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsSet}, nil).Collect()
	if err != nil {
		t.Errorf("STORE 1 FLAGS (): %v", err)
	} else if len(got) != 1 || len(got[0].Flags) != 0 {
		t.Errorf("STORE 1 FLAGS (): %+v, want one FETCH with no flags", got)
	}
	if _, err := c.UIDExpunge(imap.UIDSet{imap.UIDRange{Start: 0, Stop: 0}}).Collect(); err != nil {
		t.Errorf("UID EXPUNGE *: %v", err)
	}
	if n := e.count(inbox.Id); n != 1 {
		t.Errorf("the inbox has %d messages after UID EXPUNGE * (UID %d was \\Deleted), want 1", n, last.ImapUid)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "INBOX").Wait(); err != nil {
		t.Errorf("COPY to the selected mailbox: %v", err)
	}
	if n := e.count(inbox.Id); n != 2 {
		t.Errorf("the inbox has %d messages after COPY to itself, want 2", n)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "INBOX").Wait(); imapCode(err) != imap.ResponseCodeCannot {
		t.Errorf("MOVE to the selected mailbox: %v, want NO [CANNOT]", err)
	}

	for name, secret := range map[string]string{"admin": e.adminToken, "service": e.serviceToken} {
		if err := gw.client(t, nil).Login("work", secret).Wait(); imapCode(err) != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("LOGIN with the %s token: %v, want NO [AUTHENTICATIONFAILED]", name, err)
		}
	}
}

// TestImapError: store errors become NO with a code; the text of
// transport and internal errors (which may name internal addresses) is
// not passed on.
func TestImapError(t *testing.T) {
	for _, tc := range []struct {
		code     codes.Code
		want     imap.ResponseCode
		keepText bool
	}{
		{codes.NotFound, imap.ResponseCodeNonExistent, true},
		{codes.InvalidArgument, imap.ResponseCodeCannot, true},
		{codes.ResourceExhausted, imap.ResponseCodeLimit, true},
		{codes.Unavailable, imap.ResponseCodeUnavailable, false},
		{codes.Unknown, imap.ResponseCodeUnavailable, false},
		{codes.DeadlineExceeded, imap.ResponseCodeUnavailable, false},
		{codes.Internal, imap.ResponseCodeUnavailable, false},
	} {
		const secret = "dial tcp 10.1.2.3:7400: connection refused"
		err := imapError(status.Error(tc.code, secret), "do it")
		if imapCode(err) != tc.want {
			t.Errorf("%v: code %q, want %q", tc.code, imapCode(err), tc.want)
		}
		if has := strings.Contains(err.Error(), "10.1.2.3"); has != tc.keepText {
			t.Errorf("%v: %q, store's text kept %v, want %v", tc.code, err, has, tc.keepText)
		}
	}
}
