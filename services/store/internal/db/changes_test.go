package db_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

func TestGetChangesPagingAndFolding(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		start := a.State
		var items []db.IngestItem
		for i := 0; i < 10; i++ {
			items = append(items, pop3Item(a.Id, fmt.Sprint("u", i), rawMessage(i)))
		}
		res := mustIngest(t, d, items...)
		// Message 0 updated (stays "created" since start), message 1
		// deleted (created and deleted: nowhere).
		if _, _, err := d.UpdateFlags(ctx, device, a.Id, []string{res[0].MessageId}, []string{`\Seen`}, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := d.DeleteMessages(ctx, device, a.Id, []string{res[1].MessageId}); err != nil {
			t.Fatal(err)
		}
		all, err := d.GetChanges(ctx, a.Id, start, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if all.HasMore || len(all.CreatedMessageIds) != 9 || len(all.UpdatedMessageIds) != 0 || len(all.DeletedMessageIds) != 0 {
			t.Fatalf("changes since start: %v", all)
		}
		if slices.Contains(all.CreatedMessageIds, res[1].MessageId) {
			t.Fatal("created-then-deleted message reported")
		}
		// Paging by 3 changes visits every change once, in order.
		since, pages := start, 0
		var created []string
		for {
			ch, err := d.GetChanges(ctx, a.Id, since, 3)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if ch.NewState <= since && ch.HasMore {
				t.Fatalf("paging does not advance: %v", ch)
			}
			created = append(created, ch.CreatedMessageIds...)
			since = ch.NewState
			if !ch.HasMore {
				break
			}
		}
		if pages != 4 || since != all.NewState || len(created) != 10 {
			t.Fatalf("pages %d, end state %d (want %d), created %d", pages, since, all.NewState, len(created))
		}
		// From the state after ingest, the update and the delete show.
		ch, err := d.GetChanges(ctx, a.Id, start+10, 100)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(ch.UpdatedMessageIds, []string{res[0].MessageId}) || !slices.Equal(ch.DeletedMessageIds, []string{res[1].MessageId}) {
			t.Fatalf("changes after ingest: %v", ch)
		}
		// Up to date: nothing, same state.
		ch, err = d.GetChanges(ctx, a.Id, all.NewState, 100)
		if err != nil || ch.NewState != all.NewState || len(ch.CreatedMessageIds)+len(ch.UpdatedMessageIds)+len(ch.DeletedMessageIds) != 0 {
			t.Fatalf("up to date: %v %v", ch, err)
		}
		if _, err := d.GetChanges(ctx, a.Id, all.NewState+1, 100); !errors.Is(err, db.ErrCannotCalculateChanges) {
			t.Fatalf("future state: %v", err)
		}
	})
}

func TestGetChangesTooOld(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		mustIngest(t, d, pop3Item(a.Id, "u1", rawMessage(1)))
		// Events must be published before they may be pruned.
		pending, err := d.Unpublished(ctx, 100)
		if err != nil {
			t.Fatal(err)
		}
		var seqs []int64
		for _, p := range pending {
			seqs = append(seqs, p.Seq)
		}
		if res, err := d.Prune(ctx, time.Hour); err != nil || res.Events != 0 {
			t.Fatalf("pruned young events: %v %v", res, err)
		}
		if res, err := d.Prune(ctx, -time.Second); err != nil || res.Events != 0 {
			t.Fatalf("pruned unpublished events: %v %v", res, err)
		}
		if err := d.MarkPublished(ctx, seqs); err != nil {
			t.Fatal(err)
		}
		if res, err := d.Prune(ctx, -time.Second); err != nil || res.Events != int64(len(seqs)) {
			t.Fatalf("prune: %v %v", res, err)
		}
		if _, err := d.GetChanges(ctx, a.Id, 0, 100); !errors.Is(err, db.ErrCannotCalculateChanges) {
			t.Fatalf("state 0 after prune: %v", err)
		}
		if _, err := d.ReplayCursor(ctx, a.Id, 0); !errors.Is(err, db.ErrCannotCalculateChanges) {
			t.Fatalf("replay from 0 after prune: %v", err)
		}
		state, _, _ := d.AccountState(ctx, a.Id)
		if _, err := d.GetChanges(ctx, a.Id, state, 100); err != nil {
			t.Fatalf("current state after prune: %v", err)
		}
	})
}

func TestConcurrentMutationsKeepStateStrictlyIncreasing(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, imapAccount("work"))
		mb := mustMailbox(t, d, a.Id, "INBOX", 1)
		var items []db.IngestItem
		for i := 1; i <= 20; i++ {
			items = append(items, imapItem(a.Id, mb.Id, 1, uint32(i), rawMessage(i)))
		}
		res := mustIngest(t, d, items...)
		before, _, _ := d.AccountState(ctx, a.Id)
		const workers, perWorker = 8, 25
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				origin := &mailbusv1.Origin{Kind: mailbusv1.OriginKind_ORIGIN_KIND_DEVICE, DeviceId: fmt.Sprint("device-", w)}
				for i := 0; i < perWorker; i++ {
					msg := res[(w*perWorker+i)%len(res)].MessageId
					// A keyword of its own: every call is a real change.
					if _, _, err := d.UpdateFlags(ctx, origin, a.Id, []string{msg}, []string{fmt.Sprintf("k%d_%d", w, i)}, nil); err != nil {
						errc <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
		after, _, _ := d.AccountState(ctx, a.Id)
		if after-before != workers*perWorker {
			t.Fatalf("state rose by %d, want %d (lost or doubled updates)", after-before, workers*perWorker)
		}
		var last uint64
		n := 0
		for _, e := range allEvents(t, d, a.Id) {
			if e.State < last || (kindOf(e) != "account.status" && e.State == last) {
				t.Fatalf("state %d after %d", e.State, last)
			}
			last = e.State
			if kindOf(e) == "message.updated" {
				n++
			}
		}
		if n != workers*perWorker {
			t.Fatalf("%d update events, want %d", n, workers*perWorker)
		}
		// Every keyword landed: no lost update.
		keywords := 0
		for _, r := range res {
			s, err := d.GetMessageSummary(ctx, r.MessageId)
			if err != nil {
				t.Fatal(err)
			}
			keywords += len(s.Flags)
		}
		if keywords != workers*perWorker {
			t.Fatalf("%d keywords stored, want %d", keywords, workers*perWorker)
		}
	})
}

func TestOutboxOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		a := mustCreate(t, d, pop3Account("home"))
		for i := 0; i < 5; i++ {
			mustIngest(t, d, pop3Item(a.Id, fmt.Sprint(i), rawMessage(i)))
		}
		p, err := d.Unpublished(ctx, 3)
		if err != nil || len(p) != 3 {
			t.Fatalf("%v %v", p, err)
		}
		if !(p[0].Seq < p[1].Seq && p[1].Seq < p[2].Seq) || p[0].Subject != "mailbus.events."+a.Id+".mailbox.created" {
			t.Fatalf("order/subject: %+v", p)
		}
		if err := d.MarkPublished(ctx, []int64{p[0].Seq, p[1].Seq}); err != nil {
			t.Fatal(err)
		}
		rest, _ := d.Unpublished(ctx, 100)
		if len(rest) != 4 || rest[0].Seq != p[2].Seq {
			t.Fatalf("after mark: %d left, first %d", len(rest), rest[0].Seq)
		}
		if n, _ := d.UnpublishedCount(ctx); n != 4 {
			t.Fatalf("backlog %d", n)
		}
	})
}
