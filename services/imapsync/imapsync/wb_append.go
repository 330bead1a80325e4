package imapsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/imapsync/imapconn"
)

// wbAppend appends a stored message. An earlier attempt may have reached
// the server without being acknowledged: the destination is synced first
// (adopting such a copy by content hash), and the message is appended only
// if it is not there.
func (w *account) wbAppend(ctx context.Context, op *mailbusv1.AppendWriteBack) (*mailbusv1.AckWriteBackRequest, error) {
	there, err := w.presentIn(ctx, op.MailboxId, []string{op.MessageId})
	if err != nil {
		return nil, err
	}
	if there[op.MessageId] {
		return applied(), nil
	}
	name := op.MailboxName
	if f := w.folderByID(op.MailboxId); f != nil {
		name = f.name
	}
	sctx, cancel := context.WithTimeout(ctx, storeCallTimeout)
	defer cancel()
	stream, err := w.st.mailboxes.GetRawMessage(sctx, &mailbusv1.GetRawMessageRequest{MessageId: op.MessageId})
	if err != nil {
		return nil, fmt.Errorf("imapsync: raw message: %w", err)
	}
	var raw []byte
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			if isNotFound(err) {
				// Deleted by a device meanwhile: nothing to append.
				return applied(), nil
			}
			return nil, fmt.Errorf("imapsync: raw message: %w", err)
		}
		raw = append(raw, resp.Data...)
	}
	var date time.Time
	if op.InternalDate != nil {
		date = op.InternalDate.AsTime()
	}
	data, err := w.work.Append(ctx, name, raw, toFlags(op.Flags), date)
	if err != nil {
		if imapconn.IsNo(err) {
			return refused(err, "APPEND to "+name), nil
		}
		return nil, fmt.Errorf("imapsync: APPEND: %w", err)
	}
	ack := applied()
	if data != nil && data.UID != 0 {
		ack.Placements = []*mailbusv1.UpstreamPlacement{{MessageId: op.MessageId, Upstream: &mailbusv1.UpstreamId{MailboxId: op.MailboxId, Uidvalidity: data.UIDValidity, Uid: uint32(data.UID)}}}
		return ack, nil
	}
	// No APPENDUID (no UIDPLUS): sync the folder now, while the append
	// is still pending, so that the store adopts the copy by content hash,
	// and report its UID as the placement. Left for later, a delete of the
	// message would have no identity to act on.
	if _, err := w.presentIn(ctx, op.MailboxId, []string{op.MessageId}); err != nil {
		return nil, err
	}
	if f := w.folderByID(op.MailboxId); f != nil {
		for u, k := range f.known {
			if k.id == op.MessageId {
				ack.Placements = []*mailbusv1.UpstreamPlacement{{MessageId: op.MessageId, Upstream: &mailbusv1.UpstreamId{MailboxId: op.MailboxId, Uidvalidity: f.st.GetUidvalidity(), Uid: u}}}
				break
			}
		}
	}
	return ack, nil
}
