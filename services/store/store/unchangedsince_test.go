package store_test

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestUpdateFlagsUnchangedSinceThroughTheAPI: UpdateFlagsRequest's
// unchanged_since reaches the store with its presence: unset changes every
// message, 0 none (every state is above 0), and a state changes the
// messages at or below it and names the others in modified_message_ids.
func TestUpdateFlagsUnchangedSinceThroughTheAPI(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		ctx := callCtx(t)
		acct := e.createAccount(t, pop3Account("home"))
		res := e.mustIngest(t, pop3Item(acct.Id, "u1", testMessage(1)), pop3Item(acct.Id, "u2", testMessage(2)))
		ids := []string{res[0].MessageId, res[1].MessageId}
		update := func(flag string, unchangedSince *uint64) *mailbusv1.UpdateFlagsResponse {
			t.Helper()
			resp, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: ids, Add: []string{flag}, DeviceId: "phone", UnchangedSince: unchangedSince})
			if err != nil {
				t.Fatalf("UpdateFlags %s: %v", flag, err)
			}
			return resp
		}
		changedIDs := func(resp *mailbusv1.UpdateFlagsResponse) []string {
			var out []string
			for _, m := range resp.Messages {
				out = append(out, m.Id)
			}
			return out
		}

		zero := update(`\Flagged`, proto.Uint64(0))
		if len(zero.Messages) != 0 || !slices.Equal(zero.ModifiedMessageIds, ids) {
			t.Fatalf("unchanged_since 0: changed %v, modified %v; want none changed, %v modified", changedIDs(zero), zero.ModifiedMessageIds, ids)
		}
		unset := update(`\Seen`, nil)
		if !slices.Equal(changedIDs(unset), ids) || len(unset.ModifiedMessageIds) != 0 {
			t.Fatalf("unchanged_since unset: changed %v, modified %v; want %v changed", changedIDs(unset), unset.ModifiedMessageIds, ids)
		}
		// Another device changes the first message; the client still has
		// the state of the change above.
		if _, err := e.mailboxes.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: ids[:1], Add: []string{`$Work`}, DeviceId: "laptop"}); err != nil {
			t.Fatal(err)
		}
		mix := update(`\Answered`, proto.Uint64(unset.State))
		if !slices.Equal(changedIDs(mix), ids[1:]) || !slices.Equal(mix.ModifiedMessageIds, ids[:1]) {
			t.Fatalf("unchanged_since %d: changed %v, modified %v; want %v changed, %v modified", unset.State, changedIDs(mix), mix.ModifiedMessageIds, ids[1:], ids[:1])
		}
		if got := mix.Messages[0]; !slices.Contains(got.Flags, `\Answered`) || got.State != mix.State {
			t.Fatalf("changed message %v, want \\Answered at state %d", got, mix.State)
		}
	})
}
