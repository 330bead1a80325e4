package db_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// TestUpdateFlagsUnchangedSince: a conditional flag change changes the
// messages whose state is at most the condition and names the others,
// with events and a write-back only for the changed ones.
func TestUpdateFlagsUnchangedSince(t *testing.T) {
	cases := []struct {
		name string
		// bump is the index of a message another device flags before the
		// conditional change (-1: none).
		bump int
		// ids are the indexes of the messages of the conditional change.
		ids []int
		// cond is the condition, from the messages' states before the
		// conditional change (after the bump) and the ingest's state.
		cond func(states []uint64, ingested uint64) uint64
		// changed and modified are indexes of ids' messages.
		changed, modified []int
	}{
		{"below the state", -1, []int{0}, func(s []uint64, _ uint64) uint64 { return s[0] - 1 }, nil, []int{0}},
		{"equal to the state", -1, []int{0}, func(s []uint64, _ uint64) uint64 { return s[0] }, []int{0}, nil},
		{"above the state", -1, []int{0}, func(s []uint64, _ uint64) uint64 { return s[0] + 10 }, []int{0}, nil},
		{"zero", -1, []int{0, 1}, func([]uint64, uint64) uint64 { return 0 }, nil, []int{0, 1}},
		{"a mix in one call", 1, []int{0, 1, 2}, func(_ []uint64, ingested uint64) uint64 { return ingested }, []int{0, 2}, []int{1}},
		{"request order kept", 0, []int{2, 0, 1}, func(_ []uint64, ingested uint64) uint64 { return ingested }, []int{0, 2}, []int{1}},
	}
	eachBackend(t, func(t *testing.T, d *db.DB) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				ctx := context.Background()
				a := mustCreate(t, d, imapAccount(c.name))
				inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
				res := mustIngest(t, d,
					imapItem(a.Id, inbox.Id, 1, 1, rawMessage(1)),
					imapItem(a.Id, inbox.Id, 1, 2, rawMessage(2)),
					imapItem(a.Id, inbox.Id, 1, 3, rawMessage(3)))
				ingested, _, err := d.AccountState(ctx, a.Id)
				if err != nil {
					t.Fatal(err)
				}
				if c.bump >= 0 {
					other := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_DEVICE, DeviceId: "laptop"}
					if _, _, err := d.UpdateFlags(ctx, other, a.Id, []string{res[c.bump].MessageId}, []string{`\Answered`}, nil); err != nil {
						t.Fatal(err)
					}
				}
				ids := make([]string, len(c.ids))
				states := make([]uint64, len(c.ids))
				for i, n := range c.ids {
					ids[i] = res[n].MessageId
					s, err := d.GetMessageSummary(ctx, ids[i])
					if err != nil {
						t.Fatal(err)
					}
					states[i] = s.State
				}
				events, writeBacks := len(allEvents(t, d, a.Id)), len(pending(t, d, a.Id))

				changed, modified, state, err := d.UpdateFlagsUnchangedSince(ctx, device, a.Id, ids, []string{`\Flagged`}, nil, c.cond(states, ingested))
				if err != nil {
					t.Fatal(err)
				}

				wantChanged := pick(ids, c.changed)
				var gotChanged []string
				for _, s := range changed {
					gotChanged = append(gotChanged, s.Id)
					if !slices.Contains(s.Flags, `\Flagged`) {
						t.Errorf("changed message %s has flags %v", s.Id, s.Flags)
					}
				}
				if !slices.Equal(gotChanged, wantChanged) {
					t.Errorf("changed %v, want %v", gotChanged, wantChanged)
				}
				if want := pick(ids, c.modified); !slices.Equal(modified, want) {
					t.Errorf("modified %v, want %v", modified, want)
				}
				for i, id := range ids {
					s, err := d.GetMessageSummary(ctx, id)
					if err != nil {
						t.Fatal(err)
					}
					if slices.Contains(modified, id) && (slices.Contains(s.Flags, `\Flagged`) || s.State != states[i]) {
						t.Errorf("modified message %s was changed: flags %v, state %d (was %d)", id, s.Flags, s.State, states[i])
					}
				}

				// One message.updated event per changed message, none for the
				// others.
				evs := allEvents(t, d, a.Id)[events:]
				var updated []string
				for _, e := range evs {
					if kindOf(e) != "message.updated" {
						t.Errorf("unexpected %s event", kindOf(e))
						continue
					}
					updated = append(updated, e.GetMessageUpdated().GetMessage().GetId())
				}
				if !slices.Equal(updated, wantChanged) {
					t.Errorf("message.updated for %v, want %v", updated, wantChanged)
				}
				if want := ingested + uint64(len(evs)); c.bump >= 0 && state != want+1 || c.bump < 0 && state != want {
					t.Errorf("state %d after %d events (ingested at %d, bump %v)", state, len(evs), ingested, c.bump >= 0)
				}

				// The write-back names the changed messages only; none when
				// nothing changed.
				wbs := pending(t, d, a.Id)
				if len(wantChanged) == 0 {
					if len(wbs) != writeBacks {
						t.Errorf("%d new write-backs, want none", len(wbs)-writeBacks)
					}
					return
				}
				if len(wbs) != writeBacks+1 {
					t.Fatalf("%d new write-backs, want 1", len(wbs)-writeBacks)
				}
				var targets []string
				for _, tg := range wbs[len(wbs)-1].GetFlags().GetTargets() {
					targets = append(targets, tg.MessageId)
				}
				if !slices.Equal(targets, wantChanged) {
					t.Errorf("write-back targets %v, want %v", targets, wantChanged)
				}
			})
		}
	})
}

// pick returns ids[i] for every i of idx.
func pick(ids []string, idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, ids[i])
	}
	return out
}

// TestUpdateFlagsUnchangedSinceConcurrent: devices that all make a
// conditional change of one message with the state they read, each
// change raising the state, cannot all succeed: the condition is checked
// in the change's transaction, so exactly one does and the others see
// its change.
func TestUpdateFlagsUnchangedSinceConcurrent(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		inbox := mustMailbox(t, d, a.Id, "INBOX", 1)
		msg := mustIngest(t, d, imapItem(a.Id, inbox.Id, 1, 1, rawMessage(1)))[0].MessageId
		read, err := d.GetMessageSummary(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		const devices = 8
		var wg sync.WaitGroup
		var mu sync.Mutex
		var succeeded, refused int
		errc := make(chan error, devices)
		for i := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				origin := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_DEVICE, DeviceId: fmt.Sprint("device-", i)}
				// A keyword of its own: every change that is made is a real
				// change.
				changed, modified, _, err := d.UpdateFlagsUnchangedSince(ctx, origin, a.Id, []string{msg}, []string{fmt.Sprint("k", i)}, nil, read.State)
				if err != nil {
					errc <- err
					return
				}
				mu.Lock()
				defer mu.Unlock()
				succeeded += len(changed)
				refused += len(modified)
			}()
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		if succeeded != 1 || refused != devices-1 {
			t.Fatalf("%d changes made and %d refused, want 1 and %d", succeeded, refused, devices-1)
		}
		after, err := d.GetMessageSummary(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		if len(after.Flags) != 1 {
			t.Fatalf("flags %v, want one keyword", after.Flags)
		}
	})
}
