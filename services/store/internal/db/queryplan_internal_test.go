package db

import (
	"context"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/secretbox"
)

// The lookups by IMAP identity use the identity index on SQLite: without
// "uid > 0" in the query the partial index is not used and each lookup
// (an upstream flag change, an expunge, a placement) scans the account's
// messages.
func TestIdentityLookupUsesIndexOnSQLite(t *testing.T) {
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), Config{DataDir: t.TempDir(), Secrets: box})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	rows, err := d.r.Query("EXPLAIN QUERY PLAN "+messageByUpstreamQuery, 1, 2, 3, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan, "; "); !strings.Contains(got, "messages_imap_identity") {
		t.Errorf("plan %q, want the index messages_imap_identity", got)
	}
}
