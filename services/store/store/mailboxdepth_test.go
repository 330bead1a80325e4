package store_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailboxname"
	"github.com/mailbus/mailbus/services/store/internal/dbtest"
)

// nested is a mailbox name of the given number of levels under top, by "/".
func nested(top string, levels int) string {
	parts := []string{top}
	for i := 1; i < levels; i++ {
		parts = append(parts, fmt.Sprintf("l%d", i))
	}
	return strings.Join(parts, "/")
}

// TestMailboxNameLimits: a device cannot create a mailbox nested deeper
// than mailboxname.MaxDepth, nor rename one so that it or one of its
// children ends up deeper or longer than the limits (INVALID_ARGUMENT
// naming the field, nothing renamed); a server cannot declare one either.
// Up to the limits everything works.
func TestMailboxNameLimits(t *testing.T) {
	eachBackend(t, func(t *testing.T, b dbtest.Backend) {
		e := startStore(t, b, storeOpts{noNATS: true})
		acct := e.createAccount(t, imapAccount("imap"))
		m := e.mailboxes
		dev := "device"
		names := func() []string {
			resp, err := m.ListMailboxes(callCtx(t), &mailbusv1.ListMailboxesRequest{AccountId: acct.Id})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, mb := range resp.Mailboxes {
				out = append(out, mb.Name)
			}
			slices.Sort(out)
			return out
		}

		e.createMailbox(t, acct.Id, nested("Deep", mailboxname.MaxDepth), dev)
		_, err := m.CreateMailbox(callCtx(t), &mailbusv1.CreateMailboxRequest{AccountId: acct.Id, Name: nested("Deeper", mailboxname.MaxDepth+1), DeviceId: dev})
		wantCode(t, "CreateMailbox one level too deep", err, codes.InvalidArgument, "name")

		// A parent with a child of MaxDepth-1 levels: renamed one level
		// deeper the child is at the limit; two levels deeper, over it.
		parent := e.createMailbox(t, acct.Id, "P", dev)
		e.createMailbox(t, acct.Id, nested("P", mailboxname.MaxDepth-1), dev)
		if _, err := m.RenameMailbox(callCtx(t), &mailbusv1.RenameMailboxRequest{MailboxId: parent.Id, NewName: "Q/R", DeviceId: dev}); err != nil {
			t.Fatalf("RenameMailbox with the deepest child at the limit: %v", err)
		}
		before := names()
		if !slices.Contains(before, nested("Q/R", mailboxname.MaxDepth-1)) {
			t.Fatalf("the child was not renamed with its parent: %q", before)
		}
		_, err = m.RenameMailbox(callCtx(t), &mailbusv1.RenameMailboxRequest{MailboxId: parent.Id, NewName: "S/T/U", DeviceId: dev})
		wantCode(t, "RenameMailbox pushing a child one level too deep", err, codes.InvalidArgument, "new_name")
		_, err = m.RenameMailbox(callCtx(t), &mailbusv1.RenameMailboxRequest{MailboxId: parent.Id, NewName: nested("V", mailboxname.MaxDepth+1), DeviceId: dev})
		wantCode(t, "RenameMailbox one level too deep", err, codes.InvalidArgument, "new_name")

		// A child near the length limit: a longer parent name pushes it over.
		long := e.createMailbox(t, acct.Id, "L", dev)
		e.createMailbox(t, acct.Id, "L/"+strings.Repeat("x", mailboxname.MaxLen-2), dev)
		_, err = m.RenameMailbox(callCtx(t), &mailbusv1.RenameMailboxRequest{MailboxId: long.Id, NewName: "LL", DeviceId: dev})
		wantCode(t, "RenameMailbox pushing a child over the length limit", err, codes.InvalidArgument, "new_name")

		after := names()
		if slices.Contains(after, "LL") {
			t.Errorf("a refused rename renamed the parent: %q", after)
		}
		if !slices.Equal(slices.DeleteFunc(after, func(n string) bool { return strings.HasPrefix(n, "L") }), before) {
			t.Errorf("mailboxes after refused renames:\n%q\nwant\n%q", after, before)
		}

		_, err = e.ingest.UpsertMailboxes(callCtx(t), &mailbusv1.UpsertMailboxesRequest{AccountId: acct.Id, Mailboxes: []*mailbusv1.UpstreamMailbox{
			{Name: "INBOX", Delimiter: "/"},
			{Name: nested("Up", mailboxname.MaxDepth+1), Delimiter: "/"},
		}})
		wantCode(t, "UpsertMailboxes one level too deep", err, codes.InvalidArgument, "mailboxes[1].name")
		if _, err := e.ingest.UpsertMailboxes(callCtx(t), &mailbusv1.UpsertMailboxesRequest{AccountId: acct.Id, Mailboxes: []*mailbusv1.UpstreamMailbox{
			{Name: "INBOX", Delimiter: "/"},
			{Name: nested("Up", mailboxname.MaxDepth+1), Delimiter: "."},
		}}); err != nil {
			t.Errorf("UpsertMailboxes of a name with many '/' but delimiter '.': %v", err)
		}
	})
}
