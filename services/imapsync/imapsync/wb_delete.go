package imapsync

import (
	"context"
	"fmt"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// wbDelete moves messages to the Trash folder when the account has one
// (and they are not in it), else marks them \Deleted and expunges them
// (UID EXPUNGE with UIDPLUS; a plain EXPUNGE without it).
func (w *account) wbDelete(ctx context.Context, op *mailbusv1.DeleteWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	trash := w.folderByRole(mailbusv1.MailboxRole_MAILBOX_ROLE_TRASH)
	for _, g := range w.groupTargets(op.Targets) {
		if trash != nil && g.name != trash.name {
			var ts []*mailbusv1.WriteBackTarget
			for u, id := range g.byUID {
				ts = append(ts, &mailbusv1.WriteBackTarget{MessageId: id, MailboxName: g.name, Upstream: &mailbusv1.UpstreamId{Uidvalidity: g.uidvalidity, Uid: u}})
			}
			ack, err := w.wbMove(ctx, ts, trash.id, trash.name, true)
			if err != nil || ack.Outcome != mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED {
				return ack, err
			}
			continue
		}
		existing, _, ok, err := w.selectGroup(ctx, g)
		if err != nil {
			return nil, err
		}
		if !ok || len(existing) == 0 {
			continue
		}
		if err := w.work.ExpungeUIDs(ctx, existing); err != nil {
			if imapconn.IsNo(err) {
				return refused(err, "delete in "+g.name), nil
			}
			return nil, fmt.Errorf("imapsync: delete: %w", err)
		}
	}
	return applied(), nil
}
