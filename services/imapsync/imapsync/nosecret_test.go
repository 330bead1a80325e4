package imapsync_test

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/emersion/go-imap/v2/imapserver"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// TestMemNoSecretParks: an account whose secret the store cleared (an
// update moved it to another port without a new password) is parked by
// imapsync, which never logs in to the new server with an empty password
// (issue 16).
func TestMemNoSecretParks(t *testing.T) {
	var logins atomic.Int32
	h := &memHooks{login: func(*imapserver.Conn, string, string) error {
		logins.Add(1)
		return nil
	}}
	e := startStore(t)
	mem := startMemHooked(t, h)
	// Created for a closed port, then moved to the server without a new
	// password: the store clears the secret.
	a := e.createAccount(t, "127.0.0.1:1", mailbusv1.Security_SECURITY_NONE, "alice", "the-password", nil)
	_, port, _ := net.SplitHostPort(mem.addr)
	p, _ := strconv.Atoi(port)
	if _, err := e.accounts.UpdateAccount(ctxT(t), &mailbusv1.UpdateAccountRequest{
		Account: &mailbusv1.Account{Id: a.Id, Port: uint32(p)}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"port"}},
	}); err != nil {
		t.Fatal(err)
	}
	startSync(t, e, nil)
	waitFor(t, "parked for want of a password", func() bool {
		st := e.account(t, a.Id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED && strings.Contains(st.GetReason(), "no password stored")
	})
	if n := logins.Load(); n != 0 {
		t.Fatalf("%d logins to the server without the password", n)
	}
}
