package api

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/pkg/mailmsg"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// ChunkSize is the size of the chunks of raw messages and attachments.
const ChunkSize = 256 << 10

// Mailboxes implements MailboxService.
type Mailboxes struct {
	mailbusv1.UnimplementedMailboxServiceServer
	DB  *db.DB
	Log *slog.Logger
}

// ListMailboxes implements MailboxService.
func (s *Mailboxes) ListMailboxes(ctx context.Context, req *mailbusv1.ListMailboxesRequest) (*mailbusv1.ListMailboxesResponse, error) {
	list, state, err := s.DB.ListMailboxes(ctx, req.AccountId)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ListMailboxesResponse{Mailboxes: list, State: state}, nil
}

// CreateMailbox implements MailboxService.
func (s *Mailboxes) CreateMailbox(ctx context.Context, req *mailbusv1.CreateMailboxRequest) (*mailbusv1.CreateMailboxResponse, error) {
	origin, err := deviceOrigin(ctx, "device_id", req.DeviceId)
	if err != nil {
		return nil, err
	}
	mb, err := s.DB.CreateMailbox(ctx, origin, req.AccountId, req.Name)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.CreateMailboxResponse{Mailbox: mb}, nil
}

// RenameMailbox implements MailboxService.
func (s *Mailboxes) RenameMailbox(ctx context.Context, req *mailbusv1.RenameMailboxRequest) (*mailbusv1.RenameMailboxResponse, error) {
	origin, err := deviceOrigin(ctx, "device_id", req.DeviceId)
	if err != nil {
		return nil, err
	}
	mb, err := s.DB.RenameMailbox(ctx, origin, req.MailboxId, req.NewName)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.RenameMailboxResponse{Mailbox: mb}, nil
}

// DeleteMailbox implements MailboxService.
func (s *Mailboxes) DeleteMailbox(ctx context.Context, req *mailbusv1.DeleteMailboxRequest) (*mailbusv1.DeleteMailboxResponse, error) {
	origin, err := deviceOrigin(ctx, "device_id", req.DeviceId)
	if err != nil {
		return nil, err
	}
	if err := s.DB.DeleteMailbox(ctx, origin, req.MailboxId); err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.DeleteMailboxResponse{}, nil
}

// ListMessages implements MailboxService.
func (s *Mailboxes) ListMessages(ctx context.Context, req *mailbusv1.ListMessagesRequest) (*mailbusv1.ListMessagesResponse, error) {
	size, err := pageSize("page_size", req.PageSize, 50, 1000)
	if err != nil {
		return nil, err
	}
	var (
		msgs  []*mailbusv1.MessageSummary
		next  string
		state uint64
	)
	switch req.Order {
	case mailbusv1.MessageOrder_MESSAGE_ORDER_UNSPECIFIED:
		if req.MinImapUid != 0 {
			return nil, invalidArg("min_imap_uid", "only with order MESSAGE_ORDER_IMAP_UID")
		}
		msgs, next, state, err = s.DB.ListMessages(ctx, req.MailboxId, size, req.PageToken)
	case mailbusv1.MessageOrder_MESSAGE_ORDER_IMAP_UID:
		msgs, next, state, err = s.DB.ListMessagesByIMAPUID(ctx, req.MailboxId, req.MinImapUid, size, req.PageToken)
	default:
		return nil, invalidArg("order", "unknown order %d", int32(req.Order))
	}
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ListMessagesResponse{Messages: msgs, NextPageToken: next, State: state}, nil
}

// GetMessage implements MailboxService.
func (s *Mailboxes) GetMessage(ctx context.Context, req *mailbusv1.GetMessageRequest) (*mailbusv1.GetMessageResponse, error) {
	raw, summary, err := s.DB.RawMessage(ctx, req.MessageId)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	p := mailmsg.Parse(raw, nil)
	return &mailbusv1.GetMessageResponse{Message: &mailbusv1.Message{
		Summary:     summary,
		Structure:   p.Structure,
		TextBody:    p.TextBody,
		HtmlBody:    p.HTMLBody,
		Attachments: p.Attachments,
		ParseErrors: p.Errors,
	}}, nil
}

// GetRawMessage implements MailboxService.
func (s *Mailboxes) GetRawMessage(req *mailbusv1.GetRawMessageRequest, stream mailbusv1.MailboxService_GetRawMessageServer) error {
	ctx := stream.Context()
	raw, _, err := s.DB.RawMessage(ctx, req.MessageId)
	if err != nil {
		return toStatus(ctx, s.Log, err)
	}
	first := true
	for off := 0; off < len(raw) || first; off += ChunkSize {
		end := min(off+ChunkSize, len(raw))
		resp := &mailbusv1.GetRawMessageResponse{Data: raw[off:end]}
		if first {
			resp.TotalSize = uint64(len(raw))
			first = false
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

// GetAttachment implements MailboxService.
func (s *Mailboxes) GetAttachment(req *mailbusv1.GetAttachmentRequest, stream mailbusv1.MailboxService_GetAttachmentServer) error {
	ctx := stream.Context()
	raw, _, err := s.DB.RawMessage(ctx, req.MessageId)
	if err != nil {
		return toStatus(ctx, s.Log, err)
	}
	r, part, err := mailmsg.OpenPart(raw, req.PartId)
	if errors.Is(err, mailmsg.ErrNoSuchPart) {
		return status.Errorf(codes.NotFound, "message %s has no part %q", req.MessageId, req.PartId)
	}
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "part %q cannot be decoded: %v", req.PartId, err)
	}
	buf := make([]byte, ChunkSize)
	first := true
	for {
		n, rerr := io.ReadFull(r, buf)
		if n > 0 || first {
			resp := &mailbusv1.GetAttachmentResponse{Data: buf[:n]}
			if first {
				resp.ContentType, resp.Filename = part.ContentType, part.Filename
				first = false
			}
			if err := stream.Send(resp); err != nil {
				return err
			}
		}
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return status.Errorf(codes.DataLoss, "part %q: %v", req.PartId, rerr)
		}
	}
}

// UpdateFlags implements MailboxService.
func (s *Mailboxes) UpdateFlags(ctx context.Context, req *mailbusv1.UpdateFlagsRequest) (*mailbusv1.UpdateFlagsResponse, error) {
	origin, err := deviceOrigin(ctx, "device_id", req.DeviceId)
	if err != nil {
		return nil, err
	}
	if req.UnchangedSince == nil {
		msgs, state, err := s.DB.UpdateFlags(ctx, origin, req.AccountId, req.MessageIds, req.Add, req.Remove)
		if err != nil {
			return nil, toStatus(ctx, s.Log, err)
		}
		return &mailbusv1.UpdateFlagsResponse{Messages: msgs, State: state}, nil
	}
	msgs, modified, state, err := s.DB.UpdateFlagsUnchangedSince(ctx, origin, req.AccountId, req.MessageIds, req.Add, req.Remove, *req.UnchangedSince)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.UpdateFlagsResponse{Messages: msgs, State: state, ModifiedMessageIds: modified}, nil
}

// MoveMessages implements MailboxService.
func (s *Mailboxes) MoveMessages(ctx context.Context, req *mailbusv1.MoveMessagesRequest) (*mailbusv1.MoveMessagesResponse, error) {
	origin, err := deviceOrigin(ctx, "device_id", req.DeviceId)
	if err != nil {
		return nil, err
	}
	msgs, state, err := s.DB.MoveMessages(ctx, origin, req.AccountId, req.MessageIds, req.ToMailboxId)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.MoveMessagesResponse{Messages: msgs, State: state}, nil
}

// DeleteMessages implements MailboxService.
func (s *Mailboxes) DeleteMessages(ctx context.Context, req *mailbusv1.DeleteMessagesRequest) (*mailbusv1.DeleteMessagesResponse, error) {
	origin, err := deviceOrigin(ctx, "device_id", req.DeviceId)
	if err != nil {
		return nil, err
	}
	state, err := s.DB.DeleteMessages(ctx, origin, req.AccountId, req.MessageIds)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.DeleteMessagesResponse{State: state}, nil
}

// AppendMessage implements MailboxService.
func (s *Mailboxes) AppendMessage(ctx context.Context, req *mailbusv1.AppendMessageRequest) (*mailbusv1.AppendMessageResponse, error) {
	origin, err := deviceOrigin(ctx, "device_id", req.DeviceId)
	if err != nil {
		return nil, err
	}
	var date time.Time
	if req.InternalDate != nil {
		if err := req.InternalDate.CheckValid(); err != nil {
			return nil, invalidArg("internal_date", "%v", err)
		}
		date = req.InternalDate.AsTime()
	}
	m, err := s.DB.AppendMessage(ctx, origin, req.MailboxId, req.Raw, req.Flags, date)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.AppendMessageResponse{Message: m}, nil
}
