package pop3fetcher

import (
	"context"
	"errors"

	"github.com/mailbus/mailbus/pkg/ingest"
)

// openIngest opens an ingest stream (pkg/ingest) under grace, the pass's
// grace context, not the pass's own: when the pass is cancelled, the
// fetcher can still ask the store to commit the messages it sent in full
// before it cuts the stream (cutting it drops the partial message: the
// store never stores a message without its end_of_message). The stream is
// cut in any case at the pass's grace deadline, Config.ShutdownGrace after
// the pass's context ended. The stream flushes every Config.FlushMessages
// messages or Config.FlushBytes octets; its watchdog is
// Config.StoreTimeout.
func (f *Fetcher) openIngest(grace context.Context) (*ingest.Stream, error) {
	s, err := f.ingestc.Open(grace, ingest.Options{FlushMessages: f.cfg.FlushMessages, FlushBytes: f.cfg.FlushBytes})
	if err != nil {
		return nil, storeErr("open ingest stream", err)
	}
	return s, nil
}

// bodyError is a failure to read a message body from the POP3 server into
// the spool (as opposed to a failure to send it to the store).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// ingestErr marks an error of the ingest stream as the store's, and
// leaves a failure to read the body from the server as it is.
func ingestErr(op string, err error) error {
	var be *ingest.BodyError
	if err == nil || errors.As(err, &be) {
		return err
	}
	return storeErr(op, err)
}
