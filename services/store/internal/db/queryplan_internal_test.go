package db

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailbus/mailbus/pkg/secretbox"
)

// The lookups by IMAP identity use the identity index on SQLite: without
// "uid > 0" in the query the partial index is not used and each lookup
// (an upstream flag change, an expunge, a placement, an ingest batch)
// scans the account's messages. Ingest's echo candidates are found by the
// blob index, not by scanning the mailbox.
func TestIdentityLookupUsesIndexOnSQLite(t *testing.T) {
	key, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(key)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Open(context.Background(), Config{DataDir: filepath.Join(t.TempDir(), "data"), Secrets: box})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, tc := range []struct {
		name  string
		query string
		args  []any
		index string
	}{
		{"messageByUpstream", messageByUpstreamQuery, []any{1, 2, 3, 4}, "messages_imap_identity"},
		{"ingest lookup", ingestIdentityQuery, []any{1, 2, 3}, "messages_imap_identity"},
		{"ingest batch lookup", ingestIdentitiesQuery(3), []any{1, 2, 3, 4, 5}, "messages_imap_identity"},
		{"ingest echo candidates", echoCandidatesQuery(2), []any{"a", "b", 1}, "messages_by_blob"},
		{"list by IMAP UID", listByIMAPUIDQuery, []any{1, 2, 3}, "USING INDEX messages_by_imap_uid"},
	} {
		plan := queryPlan(t, d, tc.query, tc.args)
		if !strings.Contains(plan, tc.index) {
			t.Errorf("%s: plan %q, want the index %s", tc.name, plan, tc.index)
		}
	}
}

func queryPlan(t *testing.T, d *DB, query string, args []any) string {
	t.Helper()
	rows, err := d.r.Query("EXPLAIN QUERY PLAN "+query, args...)
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
	return strings.Join(plan, "; ")
}
