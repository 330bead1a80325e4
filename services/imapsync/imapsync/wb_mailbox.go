package imapsync

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

func (w *account) wbCreate(ctx context.Context, op *mailbusv1.CreateMailboxWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	w.relist = true
	err := w.work.Create(ctx, op.Name)
	if err != nil && !(imapconn.IsNo(err) && imapconn.Code(err) == imap.ResponseCodeAlreadyExists) {
		if imapconn.IsNo(err) {
			// Some servers answer an existing folder without the code.
			if uv, serr := w.work.UIDValidity(ctx, op.Name); serr == nil && uv != 0 {
				return &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED, Uidvalidity: uv}, nil
			}
			return refused(err, "CREATE "+op.Name), nil
		}
		return nil, fmt.Errorf("imapsync: CREATE: %w", err)
	}
	uv, err := w.work.UIDValidity(ctx, op.Name)
	if err != nil && !imapconn.IsNo(err) {
		return nil, err
	}
	return &mailbusv1.AckWriteBackRequest{Outcome: mailbusv1.WriteBackOutcome_WRITE_BACK_OUTCOME_APPLIED, Uidvalidity: uv}, nil
}

func (w *account) wbRename(ctx context.Context, op *mailbusv1.RenameMailboxWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	w.relist = true
	err := w.work.Rename(ctx, op.OldName, op.NewName)
	if err != nil {
		if imapconn.IsNo(err) {
			// Done by an earlier attempt: the old name is gone, the new
			// one exists.
			if _, serr := w.work.UIDValidity(ctx, op.NewName); serr == nil {
				if _, oerr := w.work.UIDValidity(ctx, op.OldName); oerr != nil {
					return applied(), nil
				}
			}
			return refused(err, "RENAME "+op.OldName), nil
		}
		return nil, fmt.Errorf("imapsync: RENAME: %w", err)
	}
	return applied(), nil
}

func (w *account) wbDeleteMailbox(ctx context.Context, op *mailbusv1.DeleteMailboxWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	w.relist = true
	err := w.work.Delete(ctx, op.Name)
	if err != nil {
		if imapconn.IsNo(err) {
			if _, serr := w.work.UIDValidity(ctx, op.Name); serr != nil {
				return applied(), nil // already gone
			}
			return refused(err, "DELETE "+op.Name), nil
		}
		return nil, fmt.Errorf("imapsync: DELETE: %w", err)
	}
	return applied(), nil
}
