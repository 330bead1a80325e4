package db_test

import (
	"context"
	"errors"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// TestReportStatusGeneration (issue 17, defect C): a status report names
// the generation its fetcher works. After an update, a report of the old
// generation (a refused login with the old password, reported late) fails
// with ErrStaleGeneration and changes nothing, the account stays
// un-parked and no event is written; a report of the current generation,
// and one without a generation (0), are recorded.
func TestReportStatusGeneration(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		parked := &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_PARKED, Reason: "bad password"}
		if err := d.ReportGenerationStatus(ctx, a.Id, a.Generation, parked); err != nil {
			t.Fatalf("report of the current generation: %v", err)
		}
		up, err := d.UpdateAccount(ctx, &mailbusv1.Account{Id: a.Id, Secret: "fixed"}, []string{"secret"})
		if err != nil {
			t.Fatal(err)
		}
		events := len(allEvents(t, d, a.Id))
		cases := []struct {
			name       string
			generation uint64
			state      mailbusv1.SyncState
			wantErr    error
		}{
			{"older generation", a.Generation, mailbusv1.SyncState_SYNC_STATE_PARKED, db.ErrStaleGeneration},
			{"newer generation", up.Generation + 1, mailbusv1.SyncState_SYNC_STATE_PARKED, db.ErrStaleGeneration},
			{"current generation", up.Generation, mailbusv1.SyncState_SYNC_STATE_IDLE, nil},
			{"no generation", 0, mailbusv1.SyncState_SYNC_STATE_SYNCING, nil},
		}
		for _, tc := range cases {
			err := d.ReportGenerationStatus(ctx, a.Id, tc.generation, &mailbusv1.AccountStatus{State: tc.state, Reason: tc.name})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("%s: %v, want %v", tc.name, err, tc.wantErr)
			}
			got, err := d.GetAccount(ctx, a.Id)
			if err != nil {
				t.Fatal(err)
			}
			n := len(allEvents(t, d, a.Id))
			if tc.wantErr != nil {
				if got.Status.GetState() == tc.state || n != events {
					t.Errorf("%s: refused, yet the status is %v and %d events were written", tc.name, got.Status.GetState(), n-events)
				}
				continue
			}
			if got.Status.GetState() != tc.state || n != events+1 {
				t.Errorf("%s: status %v and %d events, want %v and 1", tc.name, got.Status.GetState(), n-events, tc.state)
			}
			events = n
		}
	})
}
