package pop3fetcher_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/pop3/pop3test"
)

// editStoredAccount changes an account's configuration in the store's
// SQLite database behind the store's back, as a database written before
// the store checked a field would hold it.
func (e *env) editStoredAccount(t testing.TB, id string, edit func(a *mailbusv1.Account)) {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dataDir, "mailbus.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var config []byte
	if err := db.QueryRow(`SELECT config FROM accounts WHERE id = ?`, id).Scan(&config); err != nil {
		t.Fatal(err)
	}
	a := &mailbusv1.Account{}
	if err := proto.Unmarshal(config, a); err != nil {
		t.Fatal(err)
	}
	edit(a)
	if config, err = proto.Marshal(a); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE accounts SET config = ? WHERE id = ?`, config, id); err != nil {
		t.Fatal(err)
	}
}

// waitSettled waits until the account's pass has ended in PARKED or
// RETRYING and returns the status.
func (e *env) waitSettled(t testing.TB, id string) *mailbusv1.AccountStatus {
	t.Helper()
	var st *mailbusv1.AccountStatus
	waitFor(t, "the account parked or retrying", func() bool {
		st = e.getAccount(t, id).GetStatus()
		return st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED || st.GetState() == mailbusv1.SyncState_SYNC_STATE_RETRYING
	})
	return st
}

// TestUnsendableAccountParks: a username or host the store refuses today
// but a database may still hold (with CR LF, "victim\r\nDELE 1"), and a
// secret that USER/PASS cannot carry, park the account with the reason:
// retrying can never succeed. Nothing of them reaches the server.
func TestUnsendableAccountParks(t *testing.T) {
	for _, c := range []struct {
		name       string
		secret     string
		edit       func(a *mailbusv1.Account)
		wantReason string
	}{
		{"username with CR LF in the database", "pw", func(a *mailbusv1.Account) { a.Username = "victim\r\nDELE 1" }, "account.username: contains the control character 0x0D"},
		{"host with CR LF in the database", "pw", func(a *mailbusv1.Account) { a.Host = "127.0.0.1\r\nx" }, "account.host: contains the control character 0x0D"},
		{"host not a host name in the database", "pw", func(a *mailbusv1.Account) { a.Host = "127.0.0.1 x" }, "account.host"},
		{"secret with CR LF", "pw\r\nDELE 1", nil, "argument contains CR, LF or NUL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := startStore(t)
			srv := pop3test.NewServer(t, pop3test.WithMailbox("victim", "pw", someMessages(0, 1)...))
			a := e.fakeAccount(t, srv, "victim", c.secret, keep)
			if c.edit != nil {
				e.editStoredAccount(t, a.Id, c.edit)
			}
			f, _ := e.newFetcher(t)
			runFetcher(t, f)
			st := e.waitSettled(t, a.Id)
			if st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), c.wantReason) {
				t.Errorf("status %v %q, want PARKED with a reason containing %q", st.GetState(), st.GetReason(), c.wantReason)
			}
			for _, cmd := range srv.Commands() {
				if strings.HasPrefix(cmd, "DELE") || strings.HasPrefix(cmd, "PASS") {
					t.Errorf("the server received %q", cmd)
				}
			}
		})
	}
}
