package db

import (
	"context"

	mailbusv1 "github.com/mailbus/mailbus/pkg/gen/mailbus/v1"
)

// RawMessageAfterSummary is the second half of RawMessage, for tests that
// change the database between its two reads.
func (d *DB) RawMessageAfterSummary(ctx context.Context, messageID string, s *mailbusv1.MessageSummary) ([]byte, *mailbusv1.MessageSummary, error) {
	return d.rawMessageOf(ctx, messageID, s)
}

// OnCollectorDecided calls f each time the retention pass holds the blob
// files' lock exclusively, with how many blobs or files it decides on
// under it. The database must keep bodies as files.
func (d *DB) OnCollectorDecided(f func(n int)) { d.files.onDecided = f }

// OnBlobTempWritten calls f with the temporary file of each body kept as a
// file once it is written, before it is renamed into place. The database
// must keep bodies as files.
func (d *DB) OnBlobTempWritten(f func(tmp string)) { d.files.onTempWritten = f }
