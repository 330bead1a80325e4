package imapsync

import (
	"context"
	"fmt"
	"slices"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailflags"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// wbFlags adds and removes flags. +FLAGS and -FLAGS commute with any other
// client's changes, so no UNCHANGEDSINCE is needed (see decision 0006).
// Messages gone upstream are reported; when every target is gone the
// write-back fails.
func (w *account) wbFlags(ctx context.Context, op *mailbusv1.FlagsWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	ack := applied()
	total, gone := 0, 0
	for _, g := range w.groupTargets(op.Targets) {
		total += len(g.byUID)
		existing, missing, ok, err := w.selectGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = slices.Collect(mapsKeys(g.byUID))
		}
		for _, u := range missing {
			ack.GoneMessageIds = append(ack.GoneMessageIds, g.byUID[u])
			gone++
		}
		if len(existing) == 0 {
			continue
		}
		for _, ch := range []struct {
			op    imap.StoreFlagsOp
			flags []string
		}{{imap.StoreFlagsAdd, op.Add}, {imap.StoreFlagsDel, op.Remove}} {
			if len(ch.flags) == 0 {
				continue
			}
			if err := w.work.StoreFlags(ctx, existing, ch.op, toFlags(ch.flags)); err != nil {
				if imapconn.IsNo(err) {
					return refused(err, "STORE in "+g.name), nil
				}
				return nil, fmt.Errorf("imapsync: STORE: %w", err)
			}
		}
		// The cached flags follow, so that the echo of this change is
		// recognised without asking the store.
		if f := w.folders[g.name]; f != nil && f.known != nil && f.st.Uidvalidity == g.uidvalidity {
			for _, u := range existing {
				if k := f.known[u]; k != nil {
					k.flags, _, _ = mailflags.Apply(k.flags, op.Add, op.Remove)
				}
			}
		}
	}
	if total > 0 && gone == total {
		ack.Outcome = mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_FAILED
		ack.Reason = "the messages no longer exist on the server"
	}
	return ack, nil
}
