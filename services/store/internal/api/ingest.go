package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// Ingest batching: the store commits when a batch reaches either bound, or
// when the fetcher flushes or ends the stream.
const (
	ingestBatchMessages = 256
	ingestBatchBytes    = 32 << 20
	// ingestPreallocMax bounds the buffer allocated up front for a
	// message's declared size: the size is a hint from the upstream server
	// (POP3 LIST, IMAP RFC822.SIZE), not a promise, so a larger message
	// grows its buffer as it arrives instead.
	ingestPreallocMax = 1 << 20
	// ingestSlackMax is the unused capacity a received message may keep;
	// one with more (its declared size was too large) is copied to a
	// buffer of its own size before it joins the batch.
	ingestSlackMax = 64 << 10
)

// Ingest implements IngestService.
type Ingest struct {
	mailbusv1.UnimplementedIngestServiceServer
	DB  *db.DB
	Log *slog.Logger
	// MaxMessageSize refuses larger messages (reported per message).
	MaxMessageSize int64
	// Metrics counts ingested messages; nil counts nothing.
	Metrics *IngestMetrics
	// AccountChanges feeds WatchAccounts; nil refuses it (Unimplemented).
	AccountChanges *AccountChanges
	// Stopping, once closed, ends WatchAccounts streams with UNAVAILABLE.
	// Nil means never.
	Stopping <-chan struct{}
}

// IngestMetrics are the counters of IngestMessages.
type IngestMetrics struct {
	// Messages counts results by outcome: "created", "duplicate", "refused".
	Messages *prometheus.CounterVec
	// Bytes counts the bytes of created messages.
	Bytes prometheus.Counter
}

// NewIngestMetrics creates and registers the ingest counters.
func NewIngestMetrics(reg prometheus.Registerer) (*IngestMetrics, error) {
	m := &IngestMetrics{
		Messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mailbus_store_ingested_messages_total", Help: "Messages received from fetchers, by outcome (created, duplicate, refused).",
		}, []string{"outcome"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mailbus_store_ingested_bytes_total", Help: "Bytes of newly stored messages.",
		}),
	}
	for _, c := range []prometheus.Collector{m.Messages, m.Bytes} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("api: metrics: %w", err)
		}
	}
	return m, nil
}

func (m *IngestMetrics) observe(batch []db.IngestItem, results []*mailbusv1.IngestResult) {
	if m == nil {
		return
	}
	for i, r := range results {
		switch {
		case r.Error != "":
			m.Messages.WithLabelValues("refused").Inc()
		case r.Created:
			m.Messages.WithLabelValues("created").Inc()
			m.Bytes.Add(float64(len(batch[i].Raw)))
		default:
			m.Messages.WithLabelValues("duplicate").Inc()
		}
	}
}

// ClaimAccount implements IngestService.
func (s *Ingest) ClaimAccount(ctx context.Context, req *mailbusv1.ClaimAccountRequest) (*mailbusv1.ClaimAccountResponse, error) {
	if err := s.DB.ClaimAccount(ctx, req.AccountId, req.LeaseToken); err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ClaimAccountResponse{}, nil
}

// GetAccountSecret implements IngestService: the interceptors let only
// service tokens call it, and the lease token must be the current one. For
// an OAuth 2.0 account it returns a valid access token, renewed by the
// store when needed (req.Refresh: at once).
func (s *Ingest) GetAccountSecret(ctx context.Context, req *mailbusv1.GetAccountSecretRequest) (*mailbusv1.GetAccountSecretResponse, error) {
	sec, err := s.DB.WithLeaseToken(req.LeaseToken).LoginSecret(ctx, req.AccountId, req.Refresh)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	resp := &mailbusv1.GetAccountSecretResponse{Secret: sec.Secret, Generation: sec.Generation}
	if !sec.Expiry.IsZero() {
		resp.ExpireTime = timestamppb.New(sec.Expiry)
	}
	return resp, nil
}

// ReportAccountStatus implements IngestService.
func (s *Ingest) ReportAccountStatus(ctx context.Context, req *mailbusv1.ReportAccountStatusRequest) (*mailbusv1.ReportAccountStatusResponse, error) {
	if err := s.DB.WithLeaseToken(req.LeaseToken).ReportGenerationStatus(ctx, req.AccountId, req.Generation, req.Status); err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ReportAccountStatusResponse{}, nil
}

// UpsertMailboxes implements IngestService.
func (s *Ingest) UpsertMailboxes(ctx context.Context, req *mailbusv1.UpsertMailboxesRequest) (*mailbusv1.UpsertMailboxesResponse, error) {
	out, err := s.DB.WithLeaseToken(req.LeaseToken).UpsertMailboxes(ctx, req.AccountId, req.Mailboxes)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.UpsertMailboxesResponse{Mailboxes: out}, nil
}

// ListMailboxSyncStates implements IngestService.
func (s *Ingest) ListMailboxSyncStates(ctx context.Context, req *mailbusv1.ListMailboxSyncStatesRequest) (*mailbusv1.ListMailboxSyncStatesResponse, error) {
	out, _, err := s.DB.ListMailboxSyncStates(ctx, req.AccountId)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ListMailboxSyncStatesResponse{Mailboxes: out}, nil
}

// SetMailboxSyncState implements IngestService.
func (s *Ingest) SetMailboxSyncState(ctx context.Context, req *mailbusv1.SetMailboxSyncStateRequest) (*mailbusv1.SetMailboxSyncStateResponse, error) {
	if err := s.DB.WithLeaseToken(req.LeaseToken).SetMailboxSyncState(ctx, req.MailboxId, req.State); err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.SetMailboxSyncStateResponse{}, nil
}

// IngestMessages implements IngestService. It buffers one message at a
// time (up to the size limit; a larger one is drained and reported, not
// stored) and commits batches. It works as a pipeline: a receiver
// goroutine adds each message to a batch as it arrives, which prepares it
// in the background (hash, parse, body file), and hands full batches to
// this goroutine, which commits and answers them in order while the next
// batch fills.
func (s *Ingest) IngestMessages(stream mailbusv1.IngestService_IngestMessagesServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	batches := make(chan pendingBatch, 1)
	var recvErr error
	go func() {
		defer close(batches)
		recvErr = s.receive(ctx, stream, batches)
	}()
	for pb := range batches {
		if pb.batch == nil {
			// A flush with no messages, answered in its turn.
			if err := stream.Send(&mailbusv1.IngestMessagesResponse{}); err != nil {
				return err
			}
			continue
		}
		results, state, err := pb.batch.Commit(ctx)
		if err != nil {
			// Returning ends the stream, which ends the receiver's Recv.
			// Batches not committed hold nothing (see db.IngestBatch).
			return toStatus(ctx, s.Log, err)
		}
		s.Metrics.observe(pb.items, results)
		if err := stream.Send(&mailbusv1.IngestMessagesResponse{Results: results, State: state}); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		// The client went away; the receiver may still be in Recv.
		return status.FromContextError(err).Err()
	}
	return recvErr
}

// pendingBatch is a batch handed from the receiver to the committer; a nil
// batch is a flush with no messages.
type pendingBatch struct {
	items []db.IngestItem
	batch *db.IngestBatch
}

// receive reads the stream into batches until it ends; it returns nil at
// the end of the stream.
func (s *Ingest) receive(ctx context.Context, stream mailbusv1.IngestService_IngestMessagesServer, batches chan<- pendingBatch) error {
	var (
		pending    pendingBatch
		batchBytes int
		cur        *db.IngestItem
		buf        []byte
		// declared is the current message's declared size.
		declared int
		// inRequest is set while buf is the data of the message's first
		// request, not a buffer of its own.
		inRequest bool
	)
	flush := func() error {
		select {
		case batches <- pending:
			pending, batchBytes = pendingBatch{}, 0
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			if cur != nil {
				return status.Error(codes.InvalidArgument, "stream ended inside a message (no end_of_message)")
			}
			if pending.batch != nil {
				return flush()
			}
			return nil
		}
		if err != nil {
			return err
		}
		if req.Meta != nil {
			if cur != nil {
				return invalidArg("meta", "a new message started before the last one ended (end_of_message)")
			}
			cur = &db.IngestItem{Meta: req.Meta}
			buf, declared, inRequest = nil, 0, false
			if int64(req.Meta.Size) > s.MaxMessageSize {
				cur.Err = tooLarge(int64(req.Meta.Size), s.MaxMessageSize)
			} else {
				declared = int(req.Meta.Size)
			}
		}
		if len(req.Data) > 0 {
			if cur == nil {
				return invalidArg("data", "data outside a message (send meta first)")
			}
			if cur.Err == nil {
				if int64(len(buf)+len(req.Data)) > s.MaxMessageSize {
					cur.Err = tooLarge(int64(len(buf)+len(req.Data)), s.MaxMessageSize)
					buf = nil
				} else if buf == nil {
					// A message's first data, which the protobuf decoding
					// copied out of the stream, is kept as it is: a
					// message in one piece (imapsync sends up to 1 MiB so)
					// is not copied again.
					buf, inRequest = req.Data, true
				} else {
					if inRequest {
						// A second piece: into a buffer of the message's
						// own, sized from the declared size (a hint that
						// saves growing it; see appendData).
						grown := make([]byte, len(buf), max(len(buf)+len(req.Data), min(declared, ingestPreallocMax)))
						copy(grown, buf)
						buf, inRequest = grown, false
					}
					buf = appendData(buf, req.Data, declared)
				}
			}
		}
		if req.EndOfMessage {
			if cur == nil {
				return invalidArg("end_of_message", "no message to end (send meta first)")
			}
			if cur.Err == nil {
				if buf == nil {
					buf = []byte{} // an empty message
				}
				cur.Raw = fitted(buf)
			}
			buf = nil
			if pending.batch == nil {
				pending.batch = s.DB.NewIngestBatch()
			}
			pending.batch.Add(*cur)
			pending.items = append(pending.items, *cur)
			// The batch bound counts the memory the batch holds.
			batchBytes += cap(cur.Raw)
			cur = nil
		}
		if req.Flush || len(pending.items) >= ingestBatchMessages || batchBytes >= ingestBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// appendData appends data to buf. A full buffer grows to twice its size
// but not past the declared size when the message still fits in it: a
// message of the size it declared ends in a buffer of exactly that size,
// and one declaring more than it sends never holds more than twice what it
// sent.
func appendData(buf, data []byte, declared int) []byte {
	need := len(buf) + len(data)
	if need > cap(buf) {
		n := max(2*cap(buf), need)
		if declared >= need {
			n = min(n, declared)
		}
		grown := make([]byte, len(buf), n)
		copy(grown, buf)
		buf = grown
	}
	return append(buf, data...)
}

// fitted returns buf, or a copy of it without the unused capacity when
// that is more than ingestSlackMax and more than a quarter of its length
// (a declared size larger than the message): a batch holds on to the
// capacity of its messages until it is answered.
func fitted(buf []byte) []byte {
	slack := cap(buf) - len(buf)
	if slack <= ingestSlackMax || slack <= len(buf)/4 {
		return buf
	}
	return bytes.Clone(buf)
}

func tooLarge(size, max int64) error {
	return fmt.Errorf("%d bytes, more than the limit of %d: %w", size, max, db.ErrTooLarge)
}

// ListUpstreamIds implements IngestService.
func (s *Ingest) ListUpstreamIds(req *mailbusv1.ListUpstreamIdsRequest, stream mailbusv1.IngestService_ListUpstreamIdsServer) error {
	ctx := stream.Context()
	err := s.DB.ListUpstreamIds(ctx, req.AccountId, req.MailboxId, 5000, func(batch []*mailbusv1.UpstreamMessage) error {
		return stream.Send(&mailbusv1.ListUpstreamIdsResponse{Messages: batch})
	})
	return toStatus(ctx, s.Log, err)
}

// ApplyUpstreamChanges implements IngestService.
func (s *Ingest) ApplyUpstreamChanges(ctx context.Context, req *mailbusv1.ApplyUpstreamChangesRequest) (*mailbusv1.ApplyUpstreamChangesResponse, error) {
	state, applied, deferred, err := s.DB.WithLeaseToken(req.LeaseToken).ApplyUpstreamChanges(ctx, req.AccountId, req.Changes)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ApplyUpstreamChangesResponse{State: state, Applied: applied, DeferredFlags: deferred}, nil
}

// ListPendingWriteBacks implements IngestService.
func (s *Ingest) ListPendingWriteBacks(ctx context.Context, req *mailbusv1.ListPendingWriteBacksRequest) (*mailbusv1.ListPendingWriteBacksResponse, error) {
	max, err := pageSize("max", req.Max, 100, 1000)
	if err != nil {
		return nil, err
	}
	wbs, err := s.DB.ListPendingWriteBacks(ctx, req.AccountId, max)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.ListPendingWriteBacksResponse{Writebacks: wbs}, nil
}

// AckWriteBack implements IngestService.
func (s *Ingest) AckWriteBack(ctx context.Context, req *mailbusv1.AckWriteBackRequest) (*mailbusv1.AckWriteBackResponse, error) {
	if err := s.DB.AckWriteBack(ctx, req); err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.AckWriteBackResponse{}, nil
}

// RebindMessages implements IngestService.
func (s *Ingest) RebindMessages(ctx context.Context, req *mailbusv1.RebindMessagesRequest) (*mailbusv1.RebindMessagesResponse, error) {
	n, err := s.DB.WithLeaseToken(req.LeaseToken).RebindMessages(ctx, req.AccountId, req.Placements)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.RebindMessagesResponse{Rebound: n}, nil
}
