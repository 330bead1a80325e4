package store_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/mailbus/mailbus/pkg/events"
	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/api"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// TestHealth: the standard health service answers SERVING for the server
// and for each of the store's services.
func TestHealth(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		for _, svc := range []string{"", mailbusv1.AccountService_ServiceDesc.ServiceName, mailbusv1.MailboxService_ServiceDesc.ServiceName,
			mailbusv1.SyncService_ServiceDesc.ServiceName, mailbusv1.IngestService_ServiceDesc.ServiceName} {
			resp, err := e.health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil {
				t.Fatalf("Check(%q): %v", svc, err)
			}
			if resp.Status != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("Check(%q) = %v, want SERVING", svc, resp.Status)
			}
		}
		_, err := e.health.Check(callCtx(t), &healthpb.HealthCheckRequest{Service: "no.such.Service"})
		wantCode(t, "Check(unknown service)", err, codes.NotFound, "")
	})
}

// watch is an open WatchChanges stream.
type watch struct {
	t      *testing.T
	stream mailbusv1.SyncService_WatchChangesClient
}

func (e *env) watch(t *testing.T, req *mailbusv1.WatchChangesRequest) *watch {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	t.Cleanup(cancel)
	s, err := e.sync.WatchChanges(ctx, req)
	if err != nil {
		t.Fatalf("WatchChanges: %v", err)
	}
	return &watch{t: t, stream: s}
}

// next returns the next event; it fails on the caught_up marker unless
// caughtUp is wanted, and then returns nil.
func (w *watch) next(caughtUp bool) *mailbusv1.Event {
	w.t.Helper()
	resp, err := w.stream.Recv()
	if err != nil {
		w.t.Fatalf("WatchChanges: %v", err)
	}
	if resp.CaughtUp != caughtUp {
		w.t.Fatalf("WatchChanges: got %v, want caught_up=%v", resp, caughtUp)
	}
	return resp.Event
}

// TestWatchChanges: a watch replays the change log from its state (0: all
// of it; n: after n), sends caught_up, then streams live changes as devices
// make them. Each device sees every device's change with the device as its
// origin, so a device recognises its own echo; skip_status leaves out
// account.status events. A state from the future is OUT_OF_RANGE with
// ErrorInfo reason CANNOT_CALCULATE_CHANGES, for WatchChanges and
// GetChanges alike.
func TestWatchChanges(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, pop3Account("watched"))
		inbox := e.inbox(t, acct.Id)
		var msgs []string
		for i := range 3 {
			msgs = append(msgs, e.mustIngest(t, pop3Item(acct.Id, fmt.Sprint("U", i), testMessage(i)))[0].MessageId)
		}
		if st := e.state(t, acct.Id); st != 4 {
			t.Fatalf("state %d after INBOX and 3 messages, want 4", st)
		}

		// Device A replays everything, without status events.
		a := e.watch(t, &mailbusv1.WatchChangesRequest{AccountId: acct.Id, SkipStatus: true})
		wantKinds := []string{events.KindMailboxCreated, events.KindMessageCreated, events.KindMessageCreated, events.KindMessageCreated}
		for i, k := range wantKinds {
			ev := a.next(false)
			if events.Kind(ev) != k || ev.State != uint64(i+1) || ev.AccountId != acct.Id {
				t.Fatalf("replay event %d: %s state %d account %s, want %s state %d", i, events.Kind(ev), ev.State, ev.AccountId, k, i+1)
			}
		}
		a.next(true)

		// Device B replays from state 2 and takes status events.
		bw := e.watch(t, &mailbusv1.WatchChangesRequest{AccountId: acct.Id, SinceState: 2})
		for _, st := range []uint64{3, 4} {
			if ev := bw.next(false); ev.State != st || ev.GetMessageCreated().GetMessage().GetId() != msgs[st-2] {
				t.Fatalf("replay from 2: got %s state %d, want message.created of %s state %d", events.Kind(ev), ev.State, msgs[st-2], st)
			}
		}
		bw.next(true)

		// Live: a status report (upstream), then device A's change.
		if _, err := e.ingest.ReportAccountStatus(callCtx(t), &mailbusv1.ReportAccountStatusRequest{AccountId: acct.Id, Status: &mailbusv1.AccountStatus{State: mailbusv1.SyncState_SYNC_STATE_IDLE}}); err != nil {
			t.Fatalf("ReportAccountStatus: %v", err)
		}
		if _, err := e.mailboxes.UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: []string{msgs[0]}, Add: []string{"\\Seen"}, DeviceId: "device-A"}); err != nil {
			t.Fatalf("UpdateFlags: %v", err)
		}
		ev := bw.next(false)
		if ev.GetAccountStatus().GetStatus().GetState() != mailbusv1.SyncState_SYNC_STATE_IDLE || ev.State != 4 {
			t.Fatalf("device B: got %s state %d, want account.status IDLE at state 4", events.Kind(ev), ev.State)
		}
		for name, w := range map[string]*watch{"device A (its echo)": a, "device B": bw} {
			ev := w.next(false)
			mu := ev.GetMessageUpdated()
			if mu == nil || ev.State != 5 || mu.GetMessage().GetId() != msgs[0] || !slices.Equal(mu.FlagsAdded, []string{"\\Seen"}) {
				t.Fatalf("%s: got %s state %d %v, want message.updated of %s adding \\Seen at state 5", name, events.Kind(ev), ev.State, mu, msgs[0])
			}
			if ev.Origin.GetKind() != mailbusv1.OriginKind_ORIGIN_KIND_DEVICE || ev.Origin.GetDeviceId() != "device-A" {
				t.Errorf("%s: origin %v, want device-A", name, ev.Origin)
			}
		}

		// Device B names itself in the metadata instead of the field.
		later := e.createMailbox(t, acct.Id, "Later", "device-B")
		ctx := metadata.AppendToOutgoingContext(callCtx(t), api.DeviceMetadataKey, "device-B")
		if _, err := e.mailboxes.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: acct.Id, MessageIds: []string{msgs[1]}, ToMailboxId: later.Id}); err != nil {
			t.Fatalf("MoveMessages: %v", err)
		}
		for name, w := range map[string]*watch{"device A": a, "device B (its echo)": bw} {
			if ev := w.next(false); ev.GetMailboxCreated().GetMailbox().GetName() != "Later" || ev.State != 6 || ev.Origin.GetDeviceId() != "device-B" {
				t.Fatalf("%s: got %s state %d origin %v, want mailbox.created Later at 6 by device-B", name, events.Kind(ev), ev.State, ev.Origin)
			}
			ev := w.next(false)
			if mu := ev.GetMessageUpdated(); mu.GetPreviousMailboxId() != inbox.Id || ev.State != 7 || ev.Origin.GetDeviceId() != "device-B" {
				t.Fatalf("%s: got %s state %d origin %v, want the move from INBOX at 7 by device-B", name, events.Kind(ev), ev.State, ev.Origin)
			}
		}

		// A state from the future.
		future := e.state(t, acct.Id) + 1
		w, err := e.sync.WatchChanges(callCtx(t), &mailbusv1.WatchChangesRequest{AccountId: acct.Id, SinceState: future})
		if err == nil {
			_, err = w.Recv()
		}
		wantCode(t, "WatchChanges from the future", err, codes.OutOfRange, "")
		if r := errorReason(err); r != api.ReasonCannotCalculateChanges {
			t.Errorf("WatchChanges from the future: reason %q, want %q", r, api.ReasonCannotCalculateChanges)
		}
		_, err = e.sync.GetChanges(callCtx(t), &mailbusv1.GetChangesRequest{AccountId: acct.Id, SinceState: future})
		wantCode(t, "GetChanges from the future", err, codes.OutOfRange, "")
		if r := errorReason(err); r != api.ReasonCannotCalculateChanges {
			t.Errorf("GetChanges from the future: reason %q, want %q", r, api.ReasonCannotCalculateChanges)
		}
	})
}

func (e *env) createMailbox(t testing.TB, accountID, name, device string) *mailbusv1.Mailbox {
	t.Helper()
	resp, err := e.mailboxes.CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: accountID, Name: name, DeviceId: device})
	if err != nil {
		t.Fatalf("CreateMailbox %s: %v", name, err)
	}
	return resp.Mailbox
}

// TestStateTooOld: once the retention pass has pruned the change log, a
// state before it is OUT_OF_RANGE with reason CANNOT_CALCULATE_CHANGES,
// while the current state still works. The store runs with a retention of
// one nanosecond and a fast retention pass; events are pruned only once
// published, so it needs NATS.
func TestStateTooOld(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{retention: 1, pruneInterval: 20 * time.Millisecond})
		acct := e.createAccount(t, pop3Account("old"))
		e.mustIngest(t, pop3Item(acct.Id, "U1", testMessage(1)))
		var err error
		waitFor(t, waitLong, "the change log to be pruned", func() bool {
			_, err = e.sync.GetChanges(callCtx(t), &mailbusv1.GetChangesRequest{AccountId: acct.Id, SinceState: 0})
			return err != nil
		})
		wantCode(t, "GetChanges from 0 after pruning", err, codes.OutOfRange, "")
		if r := errorReason(err); r != api.ReasonCannotCalculateChanges {
			t.Errorf("reason %q, want %q", r, api.ReasonCannotCalculateChanges)
		}
		w, err := e.sync.WatchChanges(callCtx(t), &mailbusv1.WatchChangesRequest{AccountId: acct.Id, SinceState: 0})
		if err == nil {
			_, err = w.Recv()
		}
		wantCode(t, "WatchChanges from 0 after pruning", err, codes.OutOfRange, "")
		if r := errorReason(err); r != api.ReasonCannotCalculateChanges {
			t.Errorf("reason %q, want %q", r, api.ReasonCannotCalculateChanges)
		}
		cur := e.state(t, acct.Id)
		resp, err := e.sync.GetChanges(callCtx(t), &mailbusv1.GetChangesRequest{AccountId: acct.Id, SinceState: cur})
		if err != nil || resp.NewState != cur || resp.HasMore {
			t.Fatalf("GetChanges from the current state: %v, %v", resp, err)
		}
	})
}

// TestGetChangesPaging pages through an account's changes with
// max_changes: each page starts where the last ended, a full page moves
// the state by exactly max_changes and says has_more, the last page ends at
// the account's state; folding the pages (created adds, deleted removes)
// gives exactly the messages and mailboxes the account has. Asked in one go,
// the same range folds like JMAP: a message created and deleted in it does
// not appear at all, one created and updated is only created.
func TestGetChangesPaging(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, pop3Account("paged"))
		inbox := e.inbox(t, acct.Id)
		var items []item
		for i := range 25 {
			items = append(items, pop3Item(acct.Id, fmt.Sprint("U", i), testMessage(i)))
		}
		var msgs []string
		for _, r := range e.mustIngest(t, items...) {
			msgs = append(msgs, r.MessageId)
		}
		for i := range 5 {
			if _, err := e.mailboxes.UpdateFlags(callCtx(t), &mailbusv1.UpdateFlagsRequest{AccountId: acct.Id, MessageIds: []string{msgs[i]}, Add: []string{"\\Flagged"}, DeviceId: "d"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.mailboxes.DeleteMessages(callCtx(t), &mailbusv1.DeleteMessagesRequest{AccountId: acct.Id, MessageIds: []string{msgs[20], msgs[0]}, DeviceId: "d"}); err != nil {
			t.Fatal(err)
		}
		folder := e.createMailbox(t, acct.Id, "Folder", "d")
		if _, err := e.mailboxes.MoveMessages(callCtx(t), &mailbusv1.MoveMessagesRequest{AccountId: acct.Id, MessageIds: []string{msgs[1]}, ToMailboxId: folder.Id, DeviceId: "d"}); err != nil {
			t.Fatal(err)
		}
		final := e.state(t, acct.Id)
		if final != 35 {
			t.Fatalf("state %d, want 1 + 25 + 5 + 2 + 1 + 1 = 35", final)
		}

		const max = 7
		haveMsgs, haveBoxes := map[string]bool{}, map[string]bool{}
		apply := func(set map[string]bool, created, updated, deleted []string) {
			for _, id := range created {
				set[id] = true
			}
			for _, id := range updated {
				if !set[id] {
					t.Errorf("updated %s, never created", id)
				}
			}
			for _, id := range deleted {
				delete(set, id)
			}
		}
		since, pages := uint64(0), 0
		for {
			resp, err := e.sync.GetChanges(callCtx(t), &mailbusv1.GetChangesRequest{AccountId: acct.Id, SinceState: since, MaxChanges: max})
			if err != nil {
				t.Fatalf("GetChanges since %d: %v", since, err)
			}
			pages++
			n := len(resp.CreatedMessageIds) + len(resp.UpdatedMessageIds) + len(resp.DeletedMessageIds) +
				len(resp.CreatedMailboxIds) + len(resp.UpdatedMailboxIds) + len(resp.DeletedMailboxIds)
			if resp.OldState != since || n == 0 || n > max {
				t.Fatalf("page since %d: old_state %d, %d objects: %v", since, resp.OldState, n, resp)
			}
			if resp.HasMore && resp.NewState != since+max {
				t.Fatalf("full page since %d: new_state %d, want %d", since, resp.NewState, since+max)
			}
			apply(haveMsgs, resp.CreatedMessageIds, resp.UpdatedMessageIds, resp.DeletedMessageIds)
			apply(haveBoxes, resp.CreatedMailboxIds, resp.UpdatedMailboxIds, resp.DeletedMailboxIds)
			since = resp.NewState
			if !resp.HasMore {
				break
			}
			if pages > 10 {
				t.Fatal("more than 10 pages for 35 changes")
			}
		}
		if since != final || pages != (35+max-1)/max {
			t.Errorf("paging ended at state %d after %d pages, want %d after %d", since, pages, final, (35+max-1)/max)
		}
		wantMsgs := map[string]bool{}
		for _, mb := range []string{inbox.Id, folder.Id} {
			for _, m := range e.listMessages(t, mb) {
				wantMsgs[m.Id] = true
			}
		}
		if fmt.Sprint(haveMsgs) != fmt.Sprint(wantMsgs) || len(wantMsgs) != 23 {
			t.Errorf("folded pages give messages %v, the account has %v", keys(haveMsgs), keys(wantMsgs))
		}
		if fmt.Sprint(haveBoxes) != fmt.Sprint(map[string]bool{inbox.Id: true, folder.Id: true}) {
			t.Errorf("folded pages give mailboxes %v", keys(haveBoxes))
		}

		// Caught up: nothing more, at the same state.
		resp, err := e.sync.GetChanges(callCtx(t), &mailbusv1.GetChangesRequest{AccountId: acct.Id, SinceState: final})
		if err != nil || resp.HasMore || resp.NewState != final || len(resp.CreatedMessageIds)+len(resp.UpdatedMessageIds)+len(resp.DeletedMessageIds) != 0 {
			t.Errorf("GetChanges at the current state: %v, %v", resp, err)
		}
		// All at once: folded.
		all, err := e.sync.GetChanges(callCtx(t), &mailbusv1.GetChangesRequest{AccountId: acct.Id})
		if err != nil {
			t.Fatal(err)
		}
		if all.HasMore || all.NewState != final || len(all.CreatedMessageIds) != 23 || len(all.UpdatedMessageIds)+len(all.DeletedMessageIds) != 0 ||
			slices.Contains(all.CreatedMessageIds, msgs[0]) || slices.Contains(all.CreatedMessageIds, msgs[20]) {
			t.Errorf("GetChanges from 0 in one page: %v", all)
		}
		// Since 26 (after the ingest): 4 updated (msgs[0] was deleted
		// after its update), 2 deleted, 1 mailbox created.
		mid, err := e.sync.GetChanges(callCtx(t), &mailbusv1.GetChangesRequest{AccountId: acct.Id, SinceState: 26})
		if err != nil {
			t.Fatal(err)
		}
		if !sameSet(mid.UpdatedMessageIds, msgs[1:5]) || !sameSet(mid.DeletedMessageIds, []string{msgs[20], msgs[0]}) ||
			!sameSet(mid.CreatedMailboxIds, []string{folder.Id}) || len(mid.CreatedMessageIds) != 0 {
			t.Errorf("GetChanges since 26: %v", mid)
		}
	})
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// TestBadInput calls every RPC with missing, malformed and unknown ids and
// other invalid input: INVALID_ARGUMENT naming the field in a BadRequest
// detail (where the store names one), NOT_FOUND for ids that do not exist
// (or belong to another account), FAILED_PRECONDITION for what POP3 cannot
// do, and nothing written by a refused request (the account states do not
// move). The harness fails the test if any call was answered INTERNAL or
// panicked.
func TestBadInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		pop := e.createAccount(t, pop3Account("pop"))
		popInbox := e.inbox(t, pop.Id)
		popMsg := e.mustIngest(t, pop3Item(pop.Id, "U1", testMessage(1)))[0].MessageId
		imap := e.createAccount(t, imapAccount("imap"))
		imapInbox := e.inbox(t, imap.Id)
		imapMsg := e.mustIngest(t, imapItem(imap.Id, imapInbox.Id, 1, 1, testMessage(2)))[0].MessageId
		local, err := e.mailboxes.CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: pop.Id, Name: "Local", DeviceId: "device"})
		if err != nil {
			t.Fatal(err)
		}
		popState, imapState := e.state(t, pop.Id), e.state(t, imap.Id)
		serviceConn := e.dial(t, e.serviceToken)

		const unknown = "999999"
		dev := "device"
		validPop := func() *mailbusv1.Account { return pop3Account("new") }
		acctWith := func(f func(a *mailbusv1.Account)) *mailbusv1.Account { a := validPop(); f(a); return a }
		mask := func(p ...string) *fieldmaskpb.FieldMask { return &fieldmaskpb.FieldMask{Paths: p} }
		a, m, s, in := e.accounts, e.mailboxes, e.sync, e.ingest

		type call = func(ctx context.Context) error
		cases := []struct {
			name  string
			call  call
			code  codes.Code
			field string
		}{
			// AccountService.
			{"CreateAccount/no account", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{})
				return err
			}, codes.InvalidArgument, "account"},
			{"CreateAccount/no name", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Name = " " })})
				return err
			}, codes.InvalidArgument, "account.name"},
			{"CreateAccount/no protocol", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Protocol = 0 })})
				return err
			}, codes.InvalidArgument, "account.protocol"},
			{"CreateAccount/no host", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Host = "" })})
				return err
			}, codes.InvalidArgument, "account.host"},
			{"CreateAccount/port 0", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Port = 0 })})
				return err
			}, codes.InvalidArgument, "account.port"},
			{"CreateAccount/port 70000", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Port = 70000 })})
				return err
			}, codes.InvalidArgument, "account.port"},
			{"CreateAccount/no security", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Security = 0 })})
				return err
			}, codes.InvalidArgument, "account.security"},
			{"CreateAccount/no username", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Username = "" })})
				return err
			}, codes.InvalidArgument, "account.username"},
			{"CreateAccount/POP3 with folders", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.FolderInclude = []string{"*"} })})
				return err
			}, codes.InvalidArgument, "account.folder_include"},
			{"CreateAccount/CR LF in username", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Username = "victim\r\nDELE 1" })})
				return err
			}, codes.InvalidArgument, "account.username"},
			{"CreateAccount/NUL in username", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Username = "bob\x00" })})
				return err
			}, codes.InvalidArgument, "account.username"},
			{"CreateAccount/CR LF in host", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Host = "pop.example.com\r\nx" })})
				return err
			}, codes.InvalidArgument, "account.host"},
			{"CreateAccount/host with a port", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Host = "pop.example.com:995" })})
				return err
			}, codes.InvalidArgument, "account.host"},
			{"CreateAccount/host a URL", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Host = "pops://pop.example.com" })})
				return err
			}, codes.InvalidArgument, "account.host"},
			{"CreateAccount/escape in name", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Name = "a\x1b[2Jb" })})
				return err
			}, codes.InvalidArgument, "account.name"},
			{"CreateAccount/DEL in name", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Name = "a\x7fb" })})
				return err
			}, codes.InvalidArgument, "account.name"},
			{"CreateAccount/all-digit name", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Name = "42" })})
				return err
			}, codes.InvalidArgument, "account.name"},
			{"CreateAccount/no secret", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Secret = "" })})
				return err
			}, codes.InvalidArgument, "account.secret"},
			{"CreateAccount/name taken", func(ctx context.Context) error {
				_, err := a.CreateAccount(ctx, &mailbusv1.CreateAccountRequest{Account: acctWith(func(a *mailbusv1.Account) { a.Name = "pop" })})
				return err
			}, codes.AlreadyExists, ""},
			{"GetAccount/no id", func(ctx context.Context) error {
				_, err := a.GetAccount(ctx, &mailbusv1.GetAccountRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"GetAccount/malformed id", func(ctx context.Context) error {
				_, err := a.GetAccount(ctx, &mailbusv1.GetAccountRequest{AccountId: "abc"})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"GetAccount/id 0", func(ctx context.Context) error {
				_, err := a.GetAccount(ctx, &mailbusv1.GetAccountRequest{AccountId: "0"})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"GetAccount/unknown id", func(ctx context.Context) error {
				_, err := a.GetAccount(ctx, &mailbusv1.GetAccountRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"GetAccount/unknown name", func(ctx context.Context) error {
				_, err := a.GetAccount(ctx, &mailbusv1.GetAccountRequest{Name: "nobody"})
				return err
			}, codes.NotFound, ""},
			{"ListAccounts/page too large", func(ctx context.Context) error {
				_, err := a.ListAccounts(ctx, &mailbusv1.ListAccountsRequest{PageSize: 100000})
				return err
			}, codes.InvalidArgument, "page_size"},
			{"ListAccounts/bad token", func(ctx context.Context) error {
				_, err := a.ListAccounts(ctx, &mailbusv1.ListAccountsRequest{PageToken: "x"})
				return err
			}, codes.InvalidArgument, "page_token"},
			{"UpdateAccount/no account", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{UpdateMask: mask("host")})
				return err
			}, codes.InvalidArgument, "account"},
			{"UpdateAccount/no id", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Host: "x"}, UpdateMask: mask("host")})
				return err
			}, codes.InvalidArgument, "account.id"},
			{"UpdateAccount/unknown id", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: unknown, Host: "x"}, UpdateMask: mask("host")})
				return err
			}, codes.NotFound, ""},
			{"UpdateAccount/no mask", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: pop.Id, Host: "x"}})
				return err
			}, codes.InvalidArgument, "update_mask"},
			{"UpdateAccount/protocol", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: pop.Id, Protocol: mailbusv1.Protocol_PROTOCOL_IMAP}, UpdateMask: mask("protocol")})
				return err
			}, codes.InvalidArgument, "update_mask"},
			{"UpdateAccount/invalid port", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: pop.Id}, UpdateMask: mask("port")})
				return err
			}, codes.InvalidArgument, "account.port"},
			{"UpdateAccount/CR LF in username", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: pop.Id, Username: "victim\r\nDELE 1"}, UpdateMask: mask("username")})
				return err
			}, codes.InvalidArgument, "account.username"},
			{"UpdateAccount/host not a host name", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: pop.Id, Host: "pop example com"}, UpdateMask: mask("host")})
				return err
			}, codes.InvalidArgument, "account.host"},
			{"UpdateAccount/all-digit name", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: pop.Id, Name: "7"}, UpdateMask: mask("name")})
				return err
			}, codes.InvalidArgument, "account.name"},
			{"UpdateAccount/empty secret", func(ctx context.Context) error {
				_, err := a.UpdateAccount(ctx, &mailbusv1.UpdateAccountRequest{Account: &mailbusv1.Account{Id: pop.Id}, UpdateMask: mask("secret")})
				return err
			}, codes.InvalidArgument, "account.secret"},
			{"DeleteAccount/no id", func(ctx context.Context) error {
				_, err := a.DeleteAccount(ctx, &mailbusv1.DeleteAccountRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"DeleteAccount/unknown id", func(ctx context.Context) error {
				_, err := a.DeleteAccount(ctx, &mailbusv1.DeleteAccountRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},

			// MailboxService.
			{"ListMailboxes/no id", func(ctx context.Context) error {
				_, err := m.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"ListMailboxes/unknown id", func(ctx context.Context) error {
				_, err := m.ListMailboxes(ctx, &mailbusv1.ListMailboxesRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"CreateMailbox/no device", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: pop.Id, Name: "X"})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"CreateMailbox/control character in device", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: pop.Id, Name: "X", DeviceId: "a\x01b"})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"CreateMailbox/no account", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{Name: "X", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"CreateMailbox/unknown account", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: unknown, Name: "X", DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"CreateMailbox/no name", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: pop.Id, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/wildcard in name", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: pop.Id, Name: "a*b", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/trailing delimiter", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: imap.Id, Name: "Trailing/", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/empty level", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: imap.Id, Name: "a//b", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/leading delimiter", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: imap.Id, Name: "/a", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/lone delimiter", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: imap.Id, Name: "/", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/dot-dot level", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: imap.Id, Name: "a/../b", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/trailing delimiter on POP3", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: pop.Id, Name: "Trailing/", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "name"},
			{"CreateMailbox/second inbox", func(ctx context.Context) error {
				_, err := m.CreateMailbox(ctx, &mailbusv1.CreateMailboxRequest{AccountId: pop.Id, Name: "inbox", DeviceId: dev})
				return err
			}, codes.AlreadyExists, ""},
			{"RenameMailbox/no device", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: popInbox.Id, NewName: "Y"})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"RenameMailbox/no id", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{NewName: "Y", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "mailbox_id"},
			{"RenameMailbox/unknown id", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: unknown, NewName: "Y", DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"RenameMailbox/no new name", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: popInbox.Id, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "new_name"},
			{"RenameMailbox/trailing delimiter", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: local.Mailbox.Id, NewName: "Local/", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "new_name"},
			{"RenameMailbox/empty level", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: local.Mailbox.Id, NewName: "a//Local", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "new_name"},
			{"RenameMailbox/dot-dot", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: local.Mailbox.Id, NewName: "..", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "new_name"},
			{"RenameMailbox/inbox", func(ctx context.Context) error {
				_, err := m.RenameMailbox(ctx, &mailbusv1.RenameMailboxRequest{MailboxId: popInbox.Id, NewName: "Y", DeviceId: dev})
				return err
			}, codes.FailedPrecondition, ""},
			{"DeleteMailbox/no device", func(ctx context.Context) error {
				_, err := m.DeleteMailbox(ctx, &mailbusv1.DeleteMailboxRequest{MailboxId: popInbox.Id})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"DeleteMailbox/malformed id", func(ctx context.Context) error {
				_, err := m.DeleteMailbox(ctx, &mailbusv1.DeleteMailboxRequest{MailboxId: "-5", DeviceId: dev})
				return err
			}, codes.InvalidArgument, "mailbox_id"},
			{"DeleteMailbox/unknown id", func(ctx context.Context) error {
				_, err := m.DeleteMailbox(ctx, &mailbusv1.DeleteMailboxRequest{MailboxId: unknown, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"DeleteMailbox/inbox", func(ctx context.Context) error {
				_, err := m.DeleteMailbox(ctx, &mailbusv1.DeleteMailboxRequest{MailboxId: popInbox.Id, DeviceId: dev})
				return err
			}, codes.FailedPrecondition, ""},
			{"ListMessages/no id", func(ctx context.Context) error {
				_, err := m.ListMessages(ctx, &mailbusv1.ListMessagesRequest{})
				return err
			}, codes.InvalidArgument, "mailbox_id"},
			{"ListMessages/unknown id", func(ctx context.Context) error {
				_, err := m.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: unknown})
				return err
			}, codes.NotFound, ""},
			{"ListMessages/bad token", func(ctx context.Context) error {
				_, err := m.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: popInbox.Id, PageToken: "!!"})
				return err
			}, codes.InvalidArgument, "page_token"},
			{"ListMessages/page too large", func(ctx context.Context) error {
				_, err := m.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: popInbox.Id, PageSize: 5000})
				return err
			}, codes.InvalidArgument, "page_size"},
			{"GetMessage/no id", func(ctx context.Context) error {
				_, err := m.GetMessage(ctx, &mailbusv1.GetMessageRequest{})
				return err
			}, codes.InvalidArgument, "message_id"},
			{"GetMessage/malformed id", func(ctx context.Context) error {
				_, err := m.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: "1.5"})
				return err
			}, codes.InvalidArgument, "message_id"},
			{"GetMessage/unknown id", func(ctx context.Context) error {
				_, err := m.GetMessage(ctx, &mailbusv1.GetMessageRequest{MessageId: unknown})
				return err
			}, codes.NotFound, ""},
			{"GetRawMessage/no id", func(ctx context.Context) error {
				return recvErr(m.GetRawMessage(ctx, &mailbusv1.GetRawMessageRequest{}))
			}, codes.InvalidArgument, "message_id"},
			{"GetRawMessage/unknown id", func(ctx context.Context) error {
				return recvErr(m.GetRawMessage(ctx, &mailbusv1.GetRawMessageRequest{MessageId: unknown}))
			}, codes.NotFound, ""},
			{"GetAttachment/no id", func(ctx context.Context) error {
				return recvErr(m.GetAttachment(ctx, &mailbusv1.GetAttachmentRequest{PartId: "1"}))
			}, codes.InvalidArgument, "message_id"},
			{"GetAttachment/unknown message", func(ctx context.Context) error {
				return recvErr(m.GetAttachment(ctx, &mailbusv1.GetAttachmentRequest{MessageId: unknown, PartId: "1"}))
			}, codes.NotFound, ""},
			{"GetAttachment/unknown part", func(ctx context.Context) error {
				return recvErr(m.GetAttachment(ctx, &mailbusv1.GetAttachmentRequest{MessageId: popMsg, PartId: "7.3"}))
			}, codes.NotFound, ""},
			{"UpdateFlags/no device", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, Add: []string{"\\Seen"}})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"UpdateFlags/blank device", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, Add: []string{"\\Seen"}, DeviceId: "   "})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"UpdateFlags/no account", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{MessageIds: []string{popMsg}, Add: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"UpdateFlags/unknown account", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: unknown, MessageIds: []string{popMsg}, Add: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"UpdateFlags/no messages", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, Add: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "message_ids"},
			{"UpdateFlags/malformed message id", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg, "x"}, Add: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "message_ids[1]"},
			{"UpdateFlags/too many messages", func(ctx context.Context) error {
				ids := make([]string, 1001)
				for i := range ids {
					ids[i] = fmt.Sprint(i + 1)
				}
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: ids, Add: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "message_ids"},
			{"UpdateFlags/no flags", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "add"},
			{"UpdateFlags/invalid flag", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, Add: []string{"two words"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "add"},
			{"UpdateFlags/invalid flag to remove", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, Remove: []string{"(paren"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "remove"},
			{"UpdateFlags/add and remove", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, Add: []string{"\\Seen"}, Remove: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "remove"},
			{"UpdateFlags/unknown message", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg, unknown}, Add: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"UpdateFlags/other account's message", func(ctx context.Context) error {
				_, err := m.UpdateFlags(ctx, &mailbusv1.UpdateFlagsRequest{AccountId: pop.Id, MessageIds: []string{popMsg, imapMsg}, Add: []string{"\\Seen"}, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"MoveMessages/no device", func(ctx context.Context) error {
				_, err := m.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, ToMailboxId: popInbox.Id})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"MoveMessages/no account", func(ctx context.Context) error {
				_, err := m.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{MessageIds: []string{popMsg}, ToMailboxId: popInbox.Id, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"MoveMessages/no destination", func(ctx context.Context) error {
				_, err := m.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "to_mailbox_id"},
			{"MoveMessages/unknown destination", func(ctx context.Context) error {
				_, err := m.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, ToMailboxId: unknown, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"MoveMessages/other account's mailbox", func(ctx context.Context) error {
				_, err := m.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: pop.Id, MessageIds: []string{popMsg}, ToMailboxId: imapInbox.Id, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"MoveMessages/unknown message", func(ctx context.Context) error {
				_, err := m.MoveMessages(ctx, &mailbusv1.MoveMessagesRequest{AccountId: pop.Id, MessageIds: []string{unknown}, ToMailboxId: popInbox.Id, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"DeleteMessages/no device", func(ctx context.Context) error {
				_, err := m.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: pop.Id, MessageIds: []string{popMsg}})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"DeleteMessages/no account", func(ctx context.Context) error {
				_, err := m.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{MessageIds: []string{popMsg}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"DeleteMessages/no messages", func(ctx context.Context) error {
				_, err := m.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: pop.Id, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "message_ids"},
			{"DeleteMessages/unknown message", func(ctx context.Context) error {
				_, err := m.DeleteMessages(ctx, &mailbusv1.DeleteMessagesRequest{AccountId: pop.Id, MessageIds: []string{popMsg, unknown}, DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"AppendMessage/no device", func(ctx context.Context) error {
				_, err := m.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: imapInbox.Id, Raw: testMessage(9)})
				return err
			}, codes.InvalidArgument, "device_id"},
			{"AppendMessage/no mailbox", func(ctx context.Context) error {
				_, err := m.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{Raw: testMessage(9), DeviceId: dev})
				return err
			}, codes.InvalidArgument, "mailbox_id"},
			{"AppendMessage/unknown mailbox", func(ctx context.Context) error {
				_, err := m.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: unknown, Raw: testMessage(9), DeviceId: dev})
				return err
			}, codes.NotFound, ""},
			{"AppendMessage/no bytes", func(ctx context.Context) error {
				_, err := m.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: imapInbox.Id, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "raw"},
			{"AppendMessage/invalid flag", func(ctx context.Context) error {
				_, err := m.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: imapInbox.Id, Raw: testMessage(9), Flags: []string{"a b"}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "flags"},
			{"AppendMessage/invalid date", func(ctx context.Context) error {
				_, err := m.AppendMessage(ctx, &mailbusv1.AppendMessageRequest{MailboxId: imapInbox.Id, Raw: testMessage(9), InternalDate: &timestamppb.Timestamp{Nanos: -1}, DeviceId: dev})
				return err
			}, codes.InvalidArgument, "internal_date"},
			{"ListMessages/unknown order", func(ctx context.Context) error {
				_, err := m.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: popInbox.Id, Order: 99})
				return err
			}, codes.InvalidArgument, "order"},
			{"ListMessages/min_imap_uid without the UID order", func(ctx context.Context) error {
				_, err := m.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: popInbox.Id, MinImapUid: 3})
				return err
			}, codes.InvalidArgument, "min_imap_uid"},
			{"ListMessages/date page token in the UID order", func(ctx context.Context) error {
				_, err := m.ListMessages(ctx, &mailbusv1.ListMessagesRequest{MailboxId: popInbox.Id, Order: mailbusv1.MessageOrder_MESSAGE_ORDER_IMAP_UID, PageToken: "MTIzLjQ"})
				return err
			}, codes.InvalidArgument, "page_token"},

			// SyncService.
			{"GetState/no id", func(ctx context.Context) error {
				_, err := s.GetState(ctx, &mailbusv1.GetStateRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"GetState/unknown id", func(ctx context.Context) error {
				_, err := s.GetState(ctx, &mailbusv1.GetStateRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"GetChanges/no id", func(ctx context.Context) error {
				_, err := s.GetChanges(ctx, &mailbusv1.GetChangesRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"GetChanges/unknown id", func(ctx context.Context) error {
				_, err := s.GetChanges(ctx, &mailbusv1.GetChangesRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"GetChanges/max too large", func(ctx context.Context) error {
				_, err := s.GetChanges(ctx, &mailbusv1.GetChangesRequest{AccountId: pop.Id, MaxChanges: 10001})
				return err
			}, codes.InvalidArgument, "max_changes"},
			{"GetChanges/state from the future", func(ctx context.Context) error {
				_, err := s.GetChanges(ctx, &mailbusv1.GetChangesRequest{AccountId: pop.Id, SinceState: popState + 1})
				return withMessage(err, fmt.Sprintf("newer than the account's current state %d", popState))
			}, codes.OutOfRange, ""},
			{"GetChanges/largest state", func(ctx context.Context) error {
				_, err := s.GetChanges(ctx, &mailbusv1.GetChangesRequest{AccountId: pop.Id, SinceState: math.MaxUint64})
				return withMessage(err, fmt.Sprintf("newer than the account's current state %d", popState))
			}, codes.OutOfRange, ""},
			{"WatchChanges/largest state", func(ctx context.Context) error {
				return withMessage(recvErr(s.WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: pop.Id, SinceState: math.MaxUint64})),
					fmt.Sprintf("newer than the account's current state %d", popState))
			}, codes.OutOfRange, ""},
			{"WatchChanges/no id", func(ctx context.Context) error {
				return recvErr(s.WatchChanges(ctx, &mailbusv1.WatchChangesRequest{}))
			}, codes.InvalidArgument, "account_id"},
			{"WatchChanges/unknown id", func(ctx context.Context) error {
				return recvErr(s.WatchChanges(ctx, &mailbusv1.WatchChangesRequest{AccountId: unknown}))
			}, codes.NotFound, ""},

			// IngestService.
			{"GetAccountSecret/no id", func(ctx context.Context) error {
				_, err := in.GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"GetAccountSecret/unknown id", func(ctx context.Context) error {
				_, err := in.GetAccountSecret(ctx, &mailbusv1.GetAccountSecretRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"ReportAccountStatus/no id", func(ctx context.Context) error {
				_, err := in.ReportAccountStatus(ctx, &mailbusv1.ReportAccountStatusRequest{Status: &mailbusv1.AccountStatus{}})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"ReportAccountStatus/no status", func(ctx context.Context) error {
				_, err := in.ReportAccountStatus(ctx, &mailbusv1.ReportAccountStatusRequest{AccountId: pop.Id})
				return err
			}, codes.InvalidArgument, "status"},
			{"ReportAccountStatus/unknown id", func(ctx context.Context) error {
				_, err := in.ReportAccountStatus(ctx, &mailbusv1.ReportAccountStatusRequest{AccountId: unknown, Status: &mailbusv1.AccountStatus{}})
				return err
			}, codes.NotFound, ""},
			{"UpsertMailboxes/no id", func(ctx context.Context) error {
				_, err := in.UpsertMailboxes(ctx, &mailbusv1.UpsertMailboxesRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"UpsertMailboxes/unknown id", func(ctx context.Context) error {
				_, err := in.UpsertMailboxes(ctx, &mailbusv1.UpsertMailboxesRequest{AccountId: unknown, Mailboxes: []*mailbusv1.UpstreamMailbox{{Name: "A"}}})
				return err
			}, codes.NotFound, ""},
			{"UpsertMailboxes/no name", func(ctx context.Context) error {
				_, err := in.UpsertMailboxes(ctx, &mailbusv1.UpsertMailboxesRequest{AccountId: imap.Id, Mailboxes: []*mailbusv1.UpstreamMailbox{{Name: "A"}, {}}})
				return err
			}, codes.InvalidArgument, "mailboxes[1].name"},
			{"ListMailboxSyncStates/no id", func(ctx context.Context) error {
				_, err := in.ListMailboxSyncStates(ctx, &mailbusv1.ListMailboxSyncStatesRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"ListMailboxSyncStates/unknown id", func(ctx context.Context) error {
				_, err := in.ListMailboxSyncStates(ctx, &mailbusv1.ListMailboxSyncStatesRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"SetMailboxSyncState/no id", func(ctx context.Context) error {
				_, err := in.SetMailboxSyncState(ctx, &mailbusv1.SetMailboxSyncStateRequest{State: &mailbusv1.MailboxSyncState{}})
				return err
			}, codes.InvalidArgument, "mailbox_id"},
			{"SetMailboxSyncState/no state", func(ctx context.Context) error {
				_, err := in.SetMailboxSyncState(ctx, &mailbusv1.SetMailboxSyncStateRequest{MailboxId: imapInbox.Id})
				return err
			}, codes.InvalidArgument, "state"},
			{"SetMailboxSyncState/unknown id", func(ctx context.Context) error {
				_, err := in.SetMailboxSyncState(ctx, &mailbusv1.SetMailboxSyncStateRequest{MailboxId: unknown, State: &mailbusv1.MailboxSyncState{}})
				return err
			}, codes.NotFound, ""},
			{"ListUpstreamIds/no id", func(ctx context.Context) error {
				return recvErr(in.ListUpstreamIds(ctx, &mailbusv1.ListUpstreamIdsRequest{}))
			}, codes.InvalidArgument, "account_id"},
			{"ListUpstreamIds/unknown id", func(ctx context.Context) error {
				return recvErr(in.ListUpstreamIds(ctx, &mailbusv1.ListUpstreamIdsRequest{AccountId: unknown}))
			}, codes.NotFound, ""},
			{"ListUpstreamIds/malformed mailbox", func(ctx context.Context) error {
				return recvErr(in.ListUpstreamIds(ctx, &mailbusv1.ListUpstreamIdsRequest{AccountId: imap.Id, MailboxId: "mb"}))
			}, codes.InvalidArgument, "mailbox_id"},
			{"ApplyUpstreamChanges/no id", func(ctx context.Context) error {
				_, err := in.ApplyUpstreamChanges(ctx, &mailbusv1.ApplyUpstreamChangesRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"ApplyUpstreamChanges/unknown id", func(ctx context.Context) error {
				_, err := in.ApplyUpstreamChanges(ctx, &mailbusv1.ApplyUpstreamChangesRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"ApplyUpstreamChanges/empty change", func(ctx context.Context) error {
				_, err := in.ApplyUpstreamChanges(ctx, &mailbusv1.ApplyUpstreamChangesRequest{AccountId: imap.Id, Changes: []*mailbusv1.UpstreamChange{{}}})
				return err
			}, codes.InvalidArgument, ""},
			{"ApplyUpstreamChanges/unknown mailbox", func(ctx context.Context) error {
				_, err := in.ApplyUpstreamChanges(ctx, &mailbusv1.ApplyUpstreamChangesRequest{AccountId: imap.Id, Changes: []*mailbusv1.UpstreamChange{
					{Change: &mailbusv1.UpstreamChange_Expunge{Expunge: &mailbusv1.UpstreamExpunge{MailboxId: unknown, Uidvalidity: 1, Uids: []uint32{1}}}},
				}})
				return err
			}, codes.NotFound, ""},
			{"ListPendingWriteBacks/no id", func(ctx context.Context) error {
				_, err := in.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{})
				return err
			}, codes.InvalidArgument, "account_id"},
			{"ListPendingWriteBacks/unknown id", func(ctx context.Context) error {
				_, err := in.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: unknown})
				return err
			}, codes.NotFound, ""},
			{"ListPendingWriteBacks/max too large", func(ctx context.Context) error {
				_, err := in.ListPendingWriteBacks(ctx, &mailbusv1.ListPendingWriteBacksRequest{AccountId: imap.Id, Max: 5000})
				return err
			}, codes.InvalidArgument, "max"},
			{"AckWriteBack/no id", func(ctx context.Context) error {
				_, err := in.AckWriteBack(ctx, &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})
				return err
			}, codes.InvalidArgument, "writeback_id"},
			{"AckWriteBack/no outcome", func(ctx context.Context) error {
				_, err := in.AckWriteBack(ctx, &mailbusv1.AckWriteBackRequest{WritebackId: "1"})
				return err
			}, codes.InvalidArgument, "outcome"},
			{"AckWriteBack/unknown id", func(ctx context.Context) error {
				_, err := in.AckWriteBack(ctx, &mailbusv1.AckWriteBackRequest{WritebackId: unknown, Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED})
				return err
			}, codes.NotFound, ""},
			{"IngestMessages/data before meta", func(ctx context.Context) error {
				return rawIngest(ctx, in, &mailbusv1.IngestMessagesRequest{Data: []byte("x")})
			}, codes.InvalidArgument, "data"},
			{"IngestMessages/end without meta", func(ctx context.Context) error {
				return rawIngest(ctx, in, &mailbusv1.IngestMessagesRequest{EndOfMessage: true})
			}, codes.InvalidArgument, "end_of_message"},
			{"IngestMessages/meta inside a message", func(ctx context.Context) error {
				meta := pop3Item(pop.Id, "U9", nil).meta
				return rawIngest(ctx, in, &mailbusv1.IngestMessagesRequest{Meta: meta, Data: []byte("x")}, &mailbusv1.IngestMessagesRequest{Meta: meta})
			}, codes.InvalidArgument, "meta"},
			{"IngestMessages/stream ends inside a message", func(ctx context.Context) error {
				return rawIngest(ctx, in, &mailbusv1.IngestMessagesRequest{Meta: pop3Item(pop.Id, "U9", nil).meta, Data: []byte("x")})
			}, codes.InvalidArgument, ""},

			// Bytes that are not protobuf, to a unary method, a server
			// stream and a client stream.
			{"Malformed/GetAccount", func(ctx context.Context) error {
				return withMessage(invokeRaw(ctx, e.conn, "/mailbus.v1.AccountService/GetAccount", false, malformedProto), "malformed request")
			}, codes.InvalidArgument, ""},
			{"Malformed/UpdateFlags", func(ctx context.Context) error {
				return withMessage(invokeRaw(ctx, e.conn, "/mailbus.v1.MailboxService/UpdateFlags", false, malformedProto), "malformed request")
			}, codes.InvalidArgument, ""},
			{"Malformed/WatchChanges", func(ctx context.Context) error {
				return withMessage(invokeRaw(ctx, e.conn, "/mailbus.v1.SyncService/WatchChanges", true, malformedProto), "malformed request")
			}, codes.InvalidArgument, ""},
			{"Malformed/IngestMessages", func(ctx context.Context) error {
				return withMessage(invokeRaw(ctx, serviceConn, "/mailbus.v1.IngestService/IngestMessages", true, malformedProto), "malformed request")
			}, codes.InvalidArgument, ""},
			{"Malformed/wrong message type", func(ctx context.Context) error {
				// The string account_id (field 1) not UTF-8. (A field 1 of
				// the wrong wire type, a varint, is valid protobuf: an
				// unknown field, and GetAccount then lacks account_id.)
				return withMessage(invokeRaw(ctx, e.conn, "/mailbus.v1.AccountService/GetAccount", false, []byte{0x0a, 0x01, 0xff}), "malformed request")
			}, codes.InvalidArgument, ""},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				wantCode(t, c.name, c.call(callCtx(t)), c.code, c.field)
			})
		}

		// Per message, the ingest stream reports bad items and goes on.
		res, err := e.ingestStream(callCtx(t), []item{
			pop3Item("abc", "U7", testMessage(7)),
			pop3Item(unknown, "U7", testMessage(7)),
			pop3Item(pop.Id, "", testMessage(7)),
			imapItem(imap.Id, imapInbox.Id, 1, 0, testMessage(7)),
			imapItem(imap.Id, unknown, 1, 7, testMessage(7)),
			imapItem(imap.Id, popInbox.Id, 1, 7, testMessage(7)),
		})
		if err != nil {
			t.Fatalf("IngestMessages with bad items: %v", err)
		}
		if len(res) != 6 {
			t.Fatalf("%d results for 6 messages", len(res))
		}
		for i, r := range res {
			if r.Error == "" || r.MessageId != "" || r.Created {
				t.Errorf("bad item %d: %+v", i, r)
			}
		}

		// Nothing written by any of it.
		if st := e.state(t, pop.Id); st != popState {
			t.Errorf("POP3 account state %d after refused requests, was %d", st, popState)
		}
		if st := e.state(t, imap.Id); st != imapState {
			t.Errorf("IMAP account state %d after refused requests, was %d", st, imapState)
		}
		wbs, err := e.ingest.ListPendingWriteBacks(callCtx(t), &mailbusv1.ListPendingWriteBacksRequest{AccountId: imap.Id})
		if err != nil || len(wbs.Writebacks) != 0 {
			t.Errorf("write-backs after refused requests: %v, %v", wbs, err)
		}
	})
}

// malformedProto is not valid protobuf: field 1, a string, says 5 bytes
// follow; one does.
var malformedProto = []byte{0x0a, 0x05, 'a'}

// rawCodec sends and receives the bytes of a *[]byte as they are.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *v.(*[]byte), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*v.(*[]byte) = append([]byte(nil), data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

// invokeRaw sends body as the request of method on conn and returns the
// call's status; stream opens the method as a stream (client- or
// server-streaming) and reads until the status.
func invokeRaw(ctx context.Context, conn *grpc.ClientConn, method string, stream bool, body []byte) error {
	var out []byte
	if !stream {
		return conn.Invoke(ctx, method, &body, &out, grpc.ForceCodec(rawCodec{}))
	}
	s, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := s.SendMsg(&body); err != nil && err != io.EOF {
		return err
	}
	s.CloseSend()
	for {
		if err := s.RecvMsg(&out); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// withMessage returns err, or an UNKNOWN error saying what is missing when
// err's message does not contain want.
func withMessage(err error, want string) error {
	if st, ok := status.FromError(err); ok && !strings.Contains(st.Message(), want) {
		return status.Errorf(codes.Unknown, "message %q does not contain %q", st.Message(), want)
	}
	return err
}

// recvErr returns the error of the first Recv of a server stream (or of
// opening it).
func recvErr[T any](s interface{ Recv() (T, error) }, err error) error {
	if err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

// rawIngest sends reqs on an IngestMessages stream, closes it, and returns
// the stream's status.
func rawIngest(ctx context.Context, in mailbusv1.IngestServiceClient, reqs ...*mailbusv1.IngestMessagesRequest) error {
	s, err := in.IngestMessages(ctx)
	if err != nil {
		return err
	}
	for _, r := range reqs {
		if err := s.Send(r); err != nil {
			break // the status comes with Recv
		}
	}
	s.CloseSend()
	for {
		if _, err := s.Recv(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

// TestIngestTooLarge: a message over the size limit, announced (meta.size)
// or not (only its data is too long), gets an error result naming the
// limit; the messages before and after it on the same stream are stored.
func TestIngestTooLarge(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		const limit = 100 << 10
		e := startStore(t, b, storeOpts{noNATS: true, maxMessageSize: limit})
		acct := e.createAccount(t, pop3Account("limited"))
		big := append(testMessage(2), bytes.Repeat([]byte("0123456789abcdef\r\n"), limit/18+1)...)
		unannounced := pop3Item(acct.Id, "U3", big)
		unannounced.meta.Size = 0
		res, err := e.ingestStream(callCtx(t), []item{
			pop3Item(acct.Id, "U1", testMessage(1)),
			pop3Item(acct.Id, "U2", big),
			unannounced,
			pop3Item(acct.Id, "U4", testMessage(4)),
		})
		if err != nil {
			t.Fatalf("IngestMessages: %v", err)
		}
		if len(res) != 4 {
			t.Fatalf("%d results for 4 messages", len(res))
		}
		for _, i := range []int{0, 3} {
			if res[i].Error != "" || !res[i].Created {
				t.Errorf("message %d: %+v, want created", i, res[i])
			}
		}
		for _, i := range []int{1, 2} {
			if res[i].MessageId != "" || !strings.Contains(res[i].Error, fmt.Sprint(limit)) {
				t.Errorf("message %d (%d bytes): %+v, want an error naming the limit %d", i, len(big), res[i], limit)
			}
			if res[i].Upstream.GetUidl() != fmt.Sprint("U", i+1) {
				t.Errorf("message %d: result for upstream %v", i, res[i].Upstream)
			}
		}
		if msgs := e.listMessages(t, e.inbox(t, acct.Id).Id); len(msgs) != 2 {
			t.Errorf("%d messages stored, want 2", len(msgs))
		}
	})
}

// TestMalformedMIME: messages that are not valid MIME (random bytes, a
// multipart cut short, no header/body separator, NULs and 8-bit bytes in
// headers, a lone LF line ending, an empty-ish message) are stored byte for
// byte, GetRawMessage returns exactly the bytes ingested, and GetMessage
// still answers with what it could parse.
func TestMalformedMIME(t *testing.T) {
	truncated := "From: a@example.com\r\nSubject: cut\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n" +
		"--XYZ\r\nContent-Type: text/plain\r\n\r\nfirst part\r\n--XYZ\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQKJcfs"
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(i*7919 + i>>3)
	}
	bodies := map[string][]byte{
		"garbage":             garbage,
		"truncated multipart": []byte(truncated),
		"no separator":        []byte("Subject: no body separator\r\nFrom: x\r\nthis line is not a header"),
		"nul and 8-bit":       []byte("Subject: caf\xe9 \x00 zero\r\nFrom: \xff\xfe <bad@@example..com>\r\nDate: not a date\r\nContent-Type: text/plain; charset=\"no-such-charset\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=ZZ broken =\r\n\xc3\x28\r\n"),
		"bare LF":             []byte("Subject: unix\nFrom: u@example.com\nContent-Type: multipart/alternative; boundary=b\n\n--b\nContent-Type: text/html\n\n<p>hi\n--b--\n"),
		"single byte":         []byte("x"),
	}
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, pop3Account("broken"))
		for name, raw := range bodies {
			t.Run(name, func(t *testing.T) {
				id := e.mustIngest(t, pop3Item(acct.Id, strings.ReplaceAll(name, " ", "-"), raw))[0].MessageId
				if got := e.rawMessage(t, id); !bytes.Equal(got, raw) {
					t.Errorf("GetRawMessage: %d bytes %q, ingested %d bytes %q", len(got), shorten(string(got)), len(raw), shorten(string(raw)))
				}
				resp, err := e.mailboxes.GetMessage(callCtx(t), &mailbusv1.GetMessageRequest{MessageId: id})
				if err != nil {
					t.Fatalf("GetMessage: %v", err)
				}
				if s := resp.Message.GetSummary(); s.GetId() != id || s.GetSize() != uint64(len(raw)) {
					t.Errorf("GetMessage summary: %v", s)
				}
				t.Logf("parse errors: %q", resp.Message.GetParseErrors())
			})
		}
		if n := len(e.listMessages(t, e.inbox(t, acct.Id).Id)); n != len(bodies) {
			t.Errorf("%d messages stored, want %d", n, len(bodies))
		}
	})
}

// TestStopEndsWatches: stopping the store ends open WatchChanges streams
// with UNAVAILABLE from the handler (so that clients watch again from their
// last state) instead of leaving the graceful stop to wait for them until
// its timeout and then cut the connections.
func TestStopEndsWatches(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, pop3Account("watched"))
		w := e.watch(t, &mailbusv1.WatchChangesRequest{AccountId: acct.Id})
		w.next(false)
		w.next(true)
		ended := make(chan error, 1)
		go func() {
			_, err := w.stream.Recv()
			ended <- err
		}()
		e.stop()
		err := <-ended
		wantCode(t, "watch at stop", err, codes.Unavailable, "")
		// The handler itself answered UNAVAILABLE (a connection cut by a
		// forced stop also reads UNAVAILABLE on the client, but the
		// handler would have returned OK).
		if n := requestsWithCode(t, e.reg, codes.Unavailable); n != 1 {
			t.Errorf("%v calls answered UNAVAILABLE by the store, want 1 (the watch)", n)
		}
	})
}

// TestIngestPipelineAnswersInOrder: batches flushed one after another on
// one stream (the store receives the next while it commits the last) are
// answered in order, one response per flush, and a protocol error after
// them ends the stream with InvalidArgument while what was flushed before
// stays stored, bodies byte-exact (small ones in the database, large ones
// as files on SQLite).
func TestIngestPipelineAnswersInOrder(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, pop3Account("pipeline"))
		ctx := callCtx(t)
		stream, err := e.ingest.IngestMessages(ctx)
		if err != nil {
			t.Fatal(err)
		}
		const batches, perBatch = 5, 7
		raw := func(n int) []byte {
			if n%2 == 0 {
				return append(testMessage(n), bytes.Repeat([]byte("a large body line\r\n"), 3000)...)
			}
			return testMessage(n)
		}
		for i := range batches {
			// An empty flush between batches is answered in its turn too.
			if i == 2 {
				if err := stream.Send(&mailbusv1.IngestMessagesRequest{Flush: true}); err != nil {
					t.Fatal(err)
				}
			}
			for j := range perBatch {
				n := i*perBatch + j
				if err := sendItem(stream, pop3Item(acct.Id, fmt.Sprint("U", n), raw(n))); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Send(&mailbusv1.IngestMessagesRequest{Flush: true}); err != nil {
				t.Fatal(err)
			}
		}
		if err := stream.Send(&mailbusv1.IngestMessagesRequest{Data: []byte("data outside a message")}); err != nil {
			t.Fatal(err)
		}
		var sizes []int
		var got []*mailbusv1.IngestResult
		for {
			resp, err := stream.Recv()
			if err != nil {
				wantCode(t, "data after the batches", err, codes.InvalidArgument, "data")
				break
			}
			sizes = append(sizes, len(resp.Results))
			got = append(got, resp.Results...)
		}
		if fmt.Sprint(sizes) != "[7 7 0 7 7 7]" {
			t.Fatalf("responses of %v results, want [7 7 0 7 7 7]", sizes)
		}
		for n, r := range got {
			if r.Upstream.GetUidl() != fmt.Sprint("U", n) || !r.Created || r.Error != "" {
				t.Fatalf("result %d: %+v", n, r)
			}
			if body := e.rawMessage(t, r.MessageId); !bytes.Equal(body, raw(n)) {
				t.Fatalf("message %d: %d bytes, want %d", n, len(body), len(raw(n)))
			}
		}
	})
}
