package events

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
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

// EnsureStream makes sure the stream cfg.Name exists. A missing stream is
// created with cfg. An existing stream belongs to its operator (decision
// 0030): EnsureStream never changes its settings (replicas, age and byte
// limits, retention, storage, ...), whatever cfg says. It only adds what
// the contract needs and the stream lacks: the subjects of cfg that none of
// the stream's subjects covers (replacing those of its subjects they
// cover, as JetStream wants no overlap). Compare the stream's settings with cfg with
// StreamDrift, to tell the operator where they differ.
//
// Several processes may call it at once: a create that loses the race falls
// back to the path of an existing stream.
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
	missing := MissingSubjects(have.Subjects, cfg.Subjects)
	if len(missing) == 0 {
		return s, nil
	}
	// Only the subjects change: every other setting is sent back as the
	// server gave it. JetStream refuses overlapping subjects in one stream,
	// so a subject of the stream that an added one covers gives way to it:
	// the stream still takes every message it took.
	want := have
	want.Subjects = slices.DeleteFunc(slices.Clone(have.Subjects), func(h string) bool {
		return slices.ContainsFunc(missing, func(m string) bool { return subjectCovers(m, h) })
	})
	want.Subjects = append(want.Subjects, missing...)
	s, err = js.UpdateStream(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("events: add subjects %q to stream %s: %w", missing, cfg.Name, err)
	}
	return s, nil
}

// MissingSubjects returns the subjects of want that no subject of have
// covers (a subject covers another when it matches every subject the other
// matches: "mailbus.>" covers "mailbus.events.>"), in the order of want.
func MissingSubjects(have, want []string) []string {
	var missing []string
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return subjectCovers(h, w) }) {
			missing = append(missing, w)
		}
	}
	return missing
}

// subjectCovers reports whether every subject that sub matches is matched by
// filter too.
func subjectCovers(filter, sub string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(sub, ".")
	for i, f := range ft {
		if f == ">" {
			return i < len(st)
		}
		if i >= len(st) {
			return false
		}
		switch {
		case f == "*":
			if st[i] == ">" {
				return false
			}
		case f != st[i]:
			return false
		}
	}
	return len(ft) == len(st)
}

// StreamDrift lists, one line each, the settings of an existing stream
// (have) that differ from those the flags ask for (want): replicas, max
// age, retention, storage, discard policy and duplicates window. The store
// logs them as a warning and changes nothing (EnsureStream); empty means
// they agree.
func StreamDrift(have, want jetstream.StreamConfig) []string {
	var out []string
	diff := func(setting string, h, w any) {
		out = append(out, fmt.Sprintf("%s: the stream has %v, the flags say %v", setting, h, w))
	}
	if h, w := max(have.Replicas, 1), max(want.Replicas, 1); h != w {
		diff("replicas", h, w)
	}
	if have.MaxAge != want.MaxAge {
		diff("max age", ageString(have.MaxAge), ageString(want.MaxAge))
	}
	if have.Retention != want.Retention {
		diff("retention", have.Retention, want.Retention)
	}
	if have.Storage != want.Storage {
		diff("storage", have.Storage, want.Storage)
	}
	if have.Discard != want.Discard {
		diff("discard", have.Discard, want.Discard)
	}
	if want.Duplicates > 0 && have.Duplicates != want.Duplicates {
		diff("duplicates window", have.Duplicates, want.Duplicates)
	}
	return out
}

func ageString(d time.Duration) string {
	if d == 0 {
		return "no age limit"
	}
	return d.String()
}
