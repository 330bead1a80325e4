package events

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestStreamConfig(t *testing.T) {
	c := StreamConfig(0, 0, 0)
	if c.Name != StreamName || len(c.Subjects) != 1 || c.Subjects[0] != "mailbus.events.>" {
		t.Errorf("name/subjects = %q %q", c.Name, c.Subjects)
	}
	if c.Storage != jetstream.FileStorage || c.Retention != jetstream.LimitsPolicy {
		t.Errorf("storage/retention = %v %v", c.Storage, c.Retention)
	}
	if c.Replicas != 1 || c.MaxAge != 0 || c.Duplicates != 2*time.Minute {
		t.Errorf("replicas/maxAge/duplicates = %d %v %v", c.Replicas, c.MaxAge, c.Duplicates)
	}
	c = StreamConfig(3, time.Minute, time.Hour)
	if c.Replicas != 3 || c.MaxAge != time.Minute || c.Duplicates != time.Minute {
		t.Errorf("replicas/maxAge/duplicates = %d %v %v", c.Replicas, c.MaxAge, c.Duplicates)
	}
}
