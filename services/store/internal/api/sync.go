package api

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
	"github.com/mailbus/mailbus/services/store/internal/db"
)

// watchBatch is how many events a watch reads at a time.
const watchBatch = 500

// Sync implements SyncService.
type Sync struct {
	mailbusv1.UnimplementedSyncServiceServer
	DB       *db.DB
	Log      *slog.Logger
	Notifier *Notifier
	// PollInterval is how often a live watch looks at the database without
	// a wake-up; 0 means 2s.
	PollInterval time.Duration
	// Stopping, once closed, ends live watches with UNAVAILABLE, so that a
	// graceful stop need not wait for them; clients watch again from the
	// last state they received. Nil means never.
	Stopping <-chan struct{}
}

// GetState implements SyncService.
func (s *Sync) GetState(ctx context.Context, req *mailbusv1.GetStateRequest) (*mailbusv1.GetStateResponse, error) {
	state, _, err := s.DB.AccountState(ctx, req.AccountId)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return &mailbusv1.GetStateResponse{State: state}, nil
}

// GetChanges implements SyncService.
func (s *Sync) GetChanges(ctx context.Context, req *mailbusv1.GetChangesRequest) (*mailbusv1.GetChangesResponse, error) {
	max, err := pageSize("max_changes", req.MaxChanges, 1000, 10000)
	if err != nil {
		return nil, err
	}
	ch, err := s.DB.GetChanges(ctx, req.AccountId, req.SinceState, max)
	if err != nil {
		return nil, toStatus(ctx, s.Log, err)
	}
	return ch, nil
}

// WatchChanges implements SyncService: it replays the events after the
// state, sends a caught_up marker, then streams new events until the client
// goes away.
func (s *Sync) WatchChanges(req *mailbusv1.WatchChangesRequest, stream mailbusv1.SyncService_WatchChangesServer) error {
	ctx := stream.Context()
	cursor, err := s.DB.ReplayCursor(ctx, req.AccountId, req.SinceState)
	if err != nil {
		return toStatus(ctx, s.Log, err)
	}
	send := func(evs []db.StoredEvent) error {
		for _, e := range evs {
			if req.SkipStatus && e.Event.GetAccountStatus() != nil {
				continue
			}
			if err := stream.Send(&mailbusv1.WatchChangesResponse{Event: e.Event}); err != nil {
				return err
			}
		}
		return nil
	}
	var after int64
	for {
		evs, err := s.DB.EventsAfter(ctx, req.AccountId, int64(req.SinceState), after, cursor, watchBatch)
		if err != nil {
			return toStatus(ctx, s.Log, err)
		}
		if err := send(evs); err != nil {
			return err
		}
		if len(evs) < watchBatch {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	// A prune during the replay may have removed events it had not read
	// yet: then the device must resync rather than believe it is current.
	if err := s.DB.CheckReplayable(ctx, req.AccountId, req.SinceState); err != nil {
		return toStatus(ctx, s.Log, err)
	}
	after = cursor
	if err := stream.Send(&mailbusv1.WatchChangesResponse{CaughtUp: true}); err != nil {
		return err
	}
	poll := s.PollInterval
	if poll <= 0 {
		poll = 2 * time.Second
	}
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		// Take the wake-up channel before reading, so that a commit
		// between the read and the wait is not missed.
		wake := s.Notifier.Wait(req.AccountId)
		evs, err := s.DB.EventsAfter(ctx, req.AccountId, -1, after, 0, watchBatch)
		if err != nil {
			return toStatus(ctx, s.Log, err)
		}
		if err := send(evs); err != nil {
			return err
		}
		if len(evs) > 0 {
			after = evs[len(evs)-1].Seq
			if len(evs) == watchBatch {
				continue
			}
		}
		timer.Reset(poll)
		select {
		case <-ctx.Done():
			return nil
		case <-s.Stopping:
			return status.Error(codes.Unavailable, "the store is stopping: watch again from the last state received")
		case <-wake:
		case <-timer.C:
		}
	}
}
