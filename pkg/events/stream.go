package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultDuplicates is the stream's de-duplication window unless configured:
// a publish retried within it with the same Nats-Msg-Id (the event id) is
// acknowledged as a duplicate and not stored again. It must be longer than
// the longest time between publishing an event and recording that it was
// published; two minutes is JetStream's own default.
const DefaultDuplicates = 2 * time.Minute

// StreamConfig returns the configuration of the events stream: StreamName on
// AllSubjects, file storage, limits retention (consumers do not remove
// events; age does), discarding the oldest events at a limit.
//
// replicas below 1 mean 1. maxAge 0 keeps events forever. duplicates 0 or
// less means DefaultDuplicates; a window longer than a non-zero maxAge is
// cut to maxAge, which JetStream requires.
func StreamConfig(replicas int, maxAge, duplicates time.Duration) jetstream.StreamConfig {
	if replicas < 1 {
		replicas = 1
	}
	if duplicates <= 0 {
		duplicates = DefaultDuplicates
	}
	if maxAge > 0 && duplicates > maxAge {
		duplicates = maxAge
	}
	return jetstream.StreamConfig{
		Name:        StreamName,
		Description: "mailbus events: one per committed change, subject " + SubjectPrefix + ".<account_id>.<kind>",
		Subjects:    []string{AllSubjects},
		Retention:   jetstream.LimitsPolicy,
		Storage:     jetstream.FileStorage,
		Discard:     jetstream.DiscardOld,
		Replicas:    replicas,
		MaxAge:      maxAge,
		Duplicates:  duplicates,
	}
}

// EnsureStream makes sure the stream cfg.Name exists as cfg describes. It
// creates a missing stream with cfg. For an existing stream it reconciles
// only the fields this contract owns (subjects, retention, storage,
// discard, replicas, max age and duplicates window) and keeps whatever else
// an operator set, such as byte limits; it updates the stream only when one
// of those fields differs. A change JetStream cannot make in place (such as
// the storage type) fails with the server's error.
//
// Several processes may call it at once: a create that loses the race falls
// back to the update path.
func EnsureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	if cfg.Name == "" {
		return nil, errors.New("events: ensure stream: empty stream name")
	}
	s, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, cfg)
		if err == nil {
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil, fmt.Errorf("events: create stream %s: %w", cfg.Name, err)
		}
		s, err = js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("events: look up stream %s: %w", cfg.Name, err)
	}
	have := s.CachedInfo().Config
	want := reconcile(have, cfg)
	if sameOwnedFields(have, want) {
		return s, nil
	}
	s, err = js.UpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("events: update stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// reconcile returns have with the fields owned by the contract taken from
// want.
func reconcile(have, want jetstream.StreamConfig) jetstream.StreamConfig {
	out := have
	out.Subjects = slices.Clone(want.Subjects)
	out.Retention = want.Retention
	out.Storage = want.Storage
	out.Discard = want.Discard
	out.Replicas = max(want.Replicas, 1)
	out.MaxAge = want.MaxAge
	if want.Duplicates > 0 {
		out.Duplicates = want.Duplicates
	}
	return out
}

func sameOwnedFields(a, b jetstream.StreamConfig) bool {
	as, bs := slices.Clone(a.Subjects), slices.Clone(b.Subjects)
	slices.Sort(as)
	slices.Sort(bs)
	return slices.Equal(as, bs) &&
		a.Retention == b.Retention &&
		a.Storage == b.Storage &&
		a.Discard == b.Discard &&
		max(a.Replicas, 1) == max(b.Replicas, 1) &&
		a.MaxAge == b.MaxAge &&
		a.Duplicates == b.Duplicates
}
