package imapsync_test

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	_ "modernc.org/sqlite" // database/sql driver "sqlite"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
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

// TestMemUnsendableAccountParks: a host or username the store refuses
// today but a database may still hold (with CR LF, or a host that is no
// host name) parks the account with the reason instead of being retried
// as a network error: retrying can never succeed.
func TestMemUnsendableAccountParks(t *testing.T) {
	for _, c := range []struct {
		name       string
		edit       func(a *mailbusv1.Account)
		wantReason string
	}{
		{"host with CR LF", func(a *mailbusv1.Account) { a.Host = "127.0.0.1\r\nx" }, "account.host: contains the control character 0x0D"},
		{"host not a host name", func(a *mailbusv1.Account) { a.Host = "127.0.0.1 x" }, "account.host"},
		{"username with CR LF", func(a *mailbusv1.Account) { a.Username = "alice\r\nA1 DELETE INBOX" }, "account.username: contains the control character 0x0D"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := startStore(t)
			mem := startMem(t)
			a := e.createAccount(t, mem.addr, mailbusv1.Security_SECURITY_NONE, "alice", "secret", nil)
			e.editStoredAccount(t, a.Id, c.edit)
			startSync(t, e, nil)
			var st *mailbusv1.AccountStatus
			waitFor(t, "the account parked or retrying", func() bool {
				st = e.account(t, a.Id).GetStatus()
				return st.GetState() == mailbusv1.SyncState_SYNC_STATE_PARKED || st.GetState() == mailbusv1.SyncState_SYNC_STATE_RETRYING
			})
			if st.GetState() != mailbusv1.SyncState_SYNC_STATE_PARKED || !strings.Contains(st.GetReason(), c.wantReason) {
				t.Errorf("status %v %q, want PARKED with a reason containing %q", st.GetState(), st.GetReason(), c.wantReason)
			}
		})
	}
}
